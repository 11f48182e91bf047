package fr.gouv.tchap.secure;

import java.util.Objects;

/** One of the member's own devices, as the homeserver lists them. Immutable. */
public final class OwnDevice {
    private final String deviceId;
    private final String displayName;
    private final long lastSeenTs;
    private final String lastSeenIp;
    private final boolean current;

    OwnDevice(String deviceId, String displayName, long lastSeenTs, String lastSeenIp,
            boolean current) {
        this.deviceId = Objects.requireNonNull(deviceId, "deviceId");
        this.displayName = displayName;
        this.lastSeenTs = lastSeenTs;
        this.lastSeenIp = lastSeenIp;
        this.current = current;
    }

    /** From {@code {deviceId, displayName|null, lastSeenTs|null, lastSeenIp|null, current}}. */
    static OwnDevice fromRow(String[] row) {
        Rows.requireColumns(row, 5, "ownDevices");
        return new OwnDevice(
                Rows.required(row, 0, "ownDevices", "deviceId"),
                row[1],
                row[2] == null ? -1 : Rows.size(row, 2, "ownDevices", "lastSeenTs"),
                row[3],
                Rows.bool(row, 4, "ownDevices", "current"));
    }

    public String deviceId() {
        return deviceId;
    }

    /** Its display name, or null. */
    public String displayName() {
        return displayName;
    }

    /** When it was last seen (ms since the epoch), or -1 if the server does not know. */
    public long lastSeenTs() {
        return lastSeenTs;
    }

    /** The address it was last seen from, or null. */
    public String lastSeenIp() {
        return lastSeenIp;
    }

    /** Whether it is this device. */
    public boolean isCurrent() {
        return current;
    }
}
