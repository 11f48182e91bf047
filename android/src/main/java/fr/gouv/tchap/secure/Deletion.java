package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * What became of a "delete for everyone" ({@link SecureClient#redact}). Whatever the
 * {@link #state()}, the event was erased on this device before the call returned: its text,
 * its edits' text and its attachment are gone, and {@link SecureClient#messages} shows it
 * {@link Message#REDACTED}. The state only says whether the other members' devices were told.
 * Immutable.
 */
public final class Deletion {
    /** Whether the redaction reached the server. */
    public enum State {
        /** The server accepted it: deleted for everyone; {@link #id()} is its event id. */
        SENT("sent"),
        /**
         * Waiting (network down, server busy): kept in the room's queue and sent in order by a
         * later sync; {@link #id()} is its local id, which {@link Listener#onSendState} reports
         * when it is sent or refused.
         */
        QUEUED("queued"),
        /**
         * The server refused it for good ({@link #reason()}: {@code forbidden},
         * {@code not_found}, {@code refused}, …): the other members still see the event;
         * {@link #id()} is its local id.
         */
        FAILED("failed"),
        /**
         * It was our own message, still queued: it will never be sent, and nothing went to the
         * server. {@link #id()} is null.
         */
        NEVER_SENT("never_sent");

        private final String wire;

        State(String wire) {
            this.wire = wire;
        }

        /** From the native row's name; an unknown one is a contract mismatch. */
        static State fromWire(String wire) {
            for (State s : values()) {
                if (s.wire.equals(wire)) {
                    return s;
                }
            }
            throw new IllegalStateException("native redact row: unknown state " + wire
                    + " (Java classes and libtchap_secure.so out of step?)");
        }
    }

    private final State state;
    private final String id;
    private final String reason;

    Deletion(State state, String id, String reason) {
        this.state = Objects.requireNonNull(state, "state");
        this.id = id;
        this.reason = reason;
    }

    /** From a native row {@code {state, id|null, reason|null}} ({@link Native#redact}). */
    static Deletion fromRow(String[] row) {
        Rows.requireColumns(row, 3, "redact");
        State state = State.fromWire(Rows.required(row, 0, "redact", "state"));
        String id = state == State.NEVER_SENT ? row[1] : Rows.required(row, 1, "redact", "id");
        String reason = state == State.FAILED ? Rows.required(row, 2, "redact", "reason") : row[2];
        return new Deletion(state, id, reason);
    }

    public State state() {
        return state;
    }

    /**
     * For {@link State#SENT} the redaction's event id; for {@link State#QUEUED} and
     * {@link State#FAILED} its local id; for {@link State#NEVER_SENT} null.
     */
    public String id() {
        return id;
    }

    /** For {@link State#FAILED}: why the server refused it; else null. */
    public String reason() {
        return reason;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Deletion)) {
            return false;
        }
        Deletion d = (Deletion) o;
        return state == d.state && Objects.equals(id, d.id) && Objects.equals(reason, d.reason);
    }

    @Override
    public int hashCode() {
        return Objects.hash(state, id, reason);
    }

    @Override
    public String toString() {
        return "Deletion{" + state + (id == null ? "" : " " + id)
                + (reason == null ? "" : " (" + reason + ")") + "}";
    }
}
