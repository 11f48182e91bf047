package fr.gouv.tchap.secure;

import java.util.Objects;

/** One device of a user, after a fresh key query, with its trust-on-first-use state. Immutable. */
public final class Device {
    /** {@link #state()}: the device's Ed25519 key is the one first seen (trust on first use). */
    public static final String TOFU = "tofu";
    /** {@link #state()}: the device's key changed after first use; nothing is shared with it. */
    public static final String BLOCKED = "blocked";

    private final String deviceId;
    private final String ed25519;
    private final String state;
    private final boolean deleted;
    private final String displayName;

    Device(String deviceId, String ed25519, String state, boolean deleted, String displayName) {
        this.deviceId = Objects.requireNonNull(deviceId, "deviceId");
        this.ed25519 = Objects.requireNonNull(ed25519, "ed25519");
        this.state = Objects.requireNonNull(state, "state");
        this.deleted = deleted;
        this.displayName = displayName;
    }

    /** From a native row {@code {deviceId, ed25519, state, deleted, displayName|null}}. */
    static Device fromRow(String[] row) {
        Rows.requireColumns(row, 5, "devices");
        return new Device(
                Rows.required(row, 0, "devices", "deviceId"),
                Rows.required(row, 1, "devices", "ed25519"),
                Rows.required(row, 2, "devices", "state"),
                Rows.bool(row, 3, "devices", "deleted"),
                row[4]);
    }

    public String deviceId() {
        return deviceId;
    }

    /** The device's Ed25519 fingerprint key (unpadded base64), as pinned on first use. */
    public String ed25519() {
        return ed25519;
    }

    /** {@link #TOFU} or {@link #BLOCKED}. */
    public String state() {
        return state;
    }

    public boolean isBlocked() {
        return BLOCKED.equals(state);
    }

    /** Whether the device was removed from the account. */
    public boolean isDeleted() {
        return deleted;
    }

    /** The device's display name, or null. */
    public String displayName() {
        return displayName;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Device)) {
            return false;
        }
        Device d = (Device) o;
        return deviceId.equals(d.deviceId) && ed25519.equals(d.ed25519) && state.equals(d.state)
                && deleted == d.deleted && Objects.equals(displayName, d.displayName);
    }

    @Override
    public int hashCode() {
        return Objects.hash(deviceId, ed25519, state, deleted, displayName);
    }

    @Override
    public String toString() {
        return "Device{" + deviceId + ", ed25519 " + ed25519 + ", " + state
                + (deleted ? ", deleted" : "") + "}";
    }
}
