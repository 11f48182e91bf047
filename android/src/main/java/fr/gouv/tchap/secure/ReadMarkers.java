package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * Where the member stands in a room ({@link SecureClient#readMarkers}): the event our read
 * receipt points at — moved by {@link SecureClient#markRead} here, and by our other devices'
 * receipts (public or private) through the sync, never backwards — and the {@code m.fully_read}
 * marker (our own room account data: where the app last left the member). Immutable.
 */
public final class ReadMarkers {
    private final String readEventId;
    private final String fullyReadEventId;

    ReadMarkers(String readEventId, String fullyReadEventId) {
        this.readEventId = readEventId;
        this.fullyReadEventId = fullyReadEventId;
    }

    /**
     * From a native row {@code {readEventId|null, fullyReadEventId|null}}
     * ({@link Native#readMarkers}).
     */
    static ReadMarkers fromRow(String[] row) {
        Rows.requireColumns(row, 2, "readMarkers");
        return new ReadMarkers(row[0], row[1]);
    }

    /**
     * The event our read receipt points at (the unread counts start after it), or null if the
     * room was never marked read.
     */
    public String readEventId() {
        return readEventId;
    }

    /** The event of the {@code m.fully_read} marker, or null if none. */
    public String fullyReadEventId() {
        return fullyReadEventId;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof ReadMarkers)) {
            return false;
        }
        ReadMarkers m = (ReadMarkers) o;
        return Objects.equals(readEventId, m.readEventId)
                && Objects.equals(fullyReadEventId, m.fullyReadEventId);
    }

    @Override
    public int hashCode() {
        return Objects.hash(readEventId, fullyReadEventId);
    }

    @Override
    public String toString() {
        return "ReadMarkers{read " + readEventId + ", fully read " + fullyReadEventId + "}";
    }
}
