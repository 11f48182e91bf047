package fr.gouv.tchap.secure;

import java.util.Objects;

/** One timeline event of a room, from the local store. Immutable. */
public final class Message {
    /** {@link #state()}: the event was decrypted and its sender checked. */
    public static final String DECRYPTED = "decrypted";
    /** {@link #state()}: no key (yet) for this event; it may be decrypted later. */
    public static final String UNDECRYPTABLE = "undecryptable";
    /** {@link #state()}: the event was refused (replay, forged sender, wrong room, …). */
    public static final String REFUSED = "refused";

    private final String eventId;
    private final String sender;
    private final String senderDisplayName;
    private final String state;
    private final String body;
    private final String trust;
    private final String senderDevice;

    Message(String eventId, String sender, String senderDisplayName, String state, String body,
            String trust, String senderDevice) {
        this.eventId = Objects.requireNonNull(eventId, "eventId");
        this.sender = Objects.requireNonNull(sender, "sender");
        this.senderDisplayName = senderDisplayName;
        this.state = Objects.requireNonNull(state, "state");
        this.body = body;
        this.trust = trust;
        this.senderDevice = senderDevice;
    }

    /**
     * From a native row {@code {eventId, sender, senderDisplayName|null, state, body|null,
     * trust|null, senderDevice|null}}.
     */
    static Message fromRow(String[] row) {
        Rows.requireColumns(row, 7, "messages");
        return new Message(
                Rows.required(row, 0, "messages", "eventId"),
                Rows.required(row, 1, "messages", "sender"),
                row[2],
                Rows.required(row, 3, "messages", "state"),
                row[4],
                row[5],
                row[6]);
    }

    public String eventId() {
        return eventId;
    }

    /** The sender's user id. */
    public String sender() {
        return sender;
    }

    /** The sender's display name as Tchap shows it ({@code Jean Martin [Ministère X]}), or null. */
    public String senderDisplayName() {
        return senderDisplayName;
    }

    /** {@link #DECRYPTED}, {@link #UNDECRYPTABLE} or {@link #REFUSED}. */
    public String state() {
        return state;
    }

    public boolean isDecrypted() {
        return DECRYPTED.equals(state);
    }

    /** The decrypted text, or null unless {@link #isDecrypted()}. */
    public String body() {
        return body;
    }

    /** Trust in the sending device ({@code tofu}, …), or null. */
    public String trust() {
        return trust;
    }

    /** The sending device's id, or null. */
    public String senderDevice() {
        return senderDevice;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Message)) {
            return false;
        }
        Message m = (Message) o;
        return eventId.equals(m.eventId) && sender.equals(m.sender)
                && Objects.equals(senderDisplayName, m.senderDisplayName)
                && state.equals(m.state) && Objects.equals(body, m.body)
                && Objects.equals(trust, m.trust) && Objects.equals(senderDevice, m.senderDevice);
    }

    @Override
    public int hashCode() {
        return Objects.hash(eventId, sender, senderDisplayName, state, body, trust, senderDevice);
    }

    /** Never contains the body (plaintext must not reach logs): only its length. */
    @Override
    public String toString() {
        return "Message{" + eventId + " from " + sender + "/" + senderDevice + ", " + state
                + ", trust " + trust + ", body " + (body == null ? "null" : body.length() + " chars")
                + "}";
    }
}
