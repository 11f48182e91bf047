package fr.gouv.tchap.secure;

/**
 * Which read receipt this device sends when the member reads a room
 * ({@link SecureClient#markRead}), as the managed configuration sets it
 * ({@code read_receipts}; {@link SecureClient#readReceipts}). The app may say so in its
 * settings; it cannot change it.
 */
public enum ReadReceipts {
    /** {@code m.read}: every member of the room (and the homeserver) sees how far we read. */
    PUBLIC("public"),
    /**
     * {@code m.read.private}: the homeserver keeps it for our own devices only, which stay in
     * step. The default.
     */
    PRIVATE("private"),
    /**
     * None: only the {@code m.fully_read} marker (our own room account data) is sent; our
     * other devices do not learn the read position.
     */
    OFF("off");

    private final String wire;

    ReadReceipts(String wire) {
        this.wire = wire;
    }

    /** The configuration value ({@code public}, {@code private}, {@code off}). */
    public String configValue() {
        return wire;
    }

    /** From the native name; an unknown one is a contract mismatch. */
    static ReadReceipts fromWire(String wire) {
        for (ReadReceipts r : values()) {
            if (r.wire.equals(wire)) {
                return r;
            }
        }
        throw new IllegalStateException("native readReceipts: unknown value " + wire
                + " (Java classes and libtchap_secure.so out of step?)");
    }
}
