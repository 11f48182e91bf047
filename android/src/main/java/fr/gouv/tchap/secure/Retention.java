package fr.gouv.tchap.secure;

import java.time.Duration;
import java.util.Objects;

/**
 * A room's message lifetime — disappearing messages — as this device honours it
 * ({@link SecureClient#retention}). A message older than {@link #effective()} is purged from
 * the device: its text, its edits' text and its attachment erased, a tombstone left
 * ({@link Message#EXPIRED}). The lifetime counts from the message's server timestamp, whatever
 * the homeserver itself keeps. Immutable.
 */
public final class Retention {
    /**
     * The shortest lifetime honoured: a room asking for less gets this, and
     * {@link SecureClient#setRetention} refuses less ({@code retention_too_short}).
     */
    public static final Duration MIN_LIFETIME = Duration.ofSeconds(30);

    private final Duration room;
    private final Duration ceiling;
    private final Duration effective;

    Retention(Duration room, Duration ceiling, Duration effective) {
        this.room = room;
        this.ceiling = ceiling;
        this.effective = effective;
    }

    /**
     * From a native row {@code {roomMs|null, ceilingMs|null, effectiveMs|null}}
     * ({@link Native#retention}).
     */
    static Retention fromRow(String[] row) {
        Rows.requireColumns(row, 3, "retention");
        return new Retention(
                millis(row, 0, "roomMs"),
                millis(row, 1, "ceilingMs"),
                millis(row, 2, "effectiveMs"));
    }

    private static Duration millis(String[] row, int column, String name) {
        return row[column] == null
                ? null
                : Duration.ofMillis(Rows.size(row, column, "retention", name));
    }

    /**
     * The room's own lifetime ({@code m.room.retention} {@code max_lifetime}, set by a member
     * with the power to: {@link SecureClient#setRetention}), or null if it sets none.
     */
    public Duration room() {
        return room;
    }

    /**
     * The managed configuration's ceiling on every room's lifetime
     * ({@code max_message_lifetime_days}), or null if none.
     */
    public Duration ceiling() {
        return ceiling;
    }

    /**
     * What this device honours: the smaller of {@link #room()} and {@link #ceiling()}, never
     * under {@link #MIN_LIFETIME}; null if neither is set (messages are kept).
     */
    public Duration effective() {
        return effective;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Retention)) {
            return false;
        }
        Retention r = (Retention) o;
        return Objects.equals(room, r.room) && Objects.equals(ceiling, r.ceiling)
                && Objects.equals(effective, r.effective);
    }

    @Override
    public int hashCode() {
        return Objects.hash(room, ceiling, effective);
    }

    @Override
    public String toString() {
        return "Retention{room " + room + ", ceiling " + ceiling + ", effective " + effective
                + "}";
    }
}
