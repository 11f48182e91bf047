package fr.gouv.tchap.secure;

import java.util.Objects;

/** The logged-in Matrix session of a {@link SecureClient}: who and which device. Immutable. */
public final class Session {
    private final String userId;
    private final String deviceId;

    Session(String userId, String deviceId) {
        this.userId = Objects.requireNonNull(userId, "userId");
        this.deviceId = Objects.requireNonNull(deviceId, "deviceId");
    }

    /** From a native row {@code {userId, deviceId}}; null row means logged out. */
    static Session fromRow(String[] row) {
        if (row == null) {
            return null;
        }
        Rows.requireColumns(row, 2, "session");
        return new Session(row[0], row[1]);
    }

    /** Full Matrix user id, {@code @localpart:server}. */
    public String userId() {
        return userId;
    }

    /** This device's id on the homeserver. */
    public String deviceId() {
        return deviceId;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Session
                && userId.equals(((Session) o).userId)
                && deviceId.equals(((Session) o).deviceId);
    }

    @Override
    public int hashCode() {
        return Objects.hash(userId, deviceId);
    }

    @Override
    public String toString() {
        return "Session{" + userId + ", device " + deviceId + "}";
    }
}
