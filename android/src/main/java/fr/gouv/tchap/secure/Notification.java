package fr.gouv.tchap.secure;

import java.time.Duration;
import java.util.Objects;

/**
 * What to show for an event a push announced ({@link SecureClient#notification}), or for one
 * the sync brought that notifies ({@link Listener#onNotification}): the event decrypted inside
 * the library, with the account's push rules' decision on it ({@link #notifies()},
 * {@link #highlight()}, {@link #sound()}), evaluated on the device on the decrypted event. A
 * file is shown as a file only (no name, no body); an event in clear is never shown as a
 * message. Immutable.
 */
public final class Notification {
    /**
     * The wait for a missing room key when the caller has none
     * ({@link SecureClient#notification(String, String)}).
     */
    public static final Duration DEFAULT_WAIT = Duration.ofSeconds(5);
    /** The longest wait accepted (a push handler on Android has about ten seconds). */
    public static final Duration MAX_WAIT = Duration.ofSeconds(30);

    /**
     * {@link TchapSecureException#getCode()}: the event's room key did not arrive within the
     * wait. Ask again later, or let the sync show the message (the sync stores it in its place
     * in the timeline either way).
     */
    public static final String CANNOT_DECRYPT_YET = "cannot_decrypt_yet";
    /**
     * {@link TchapSecureException#getCode()}: never shown — a message in clear, a redacted
     * event, or the server answered with another event than the one asked (journaled as a
     * security event).
     */
    public static final String REFUSED = "notification_refused";

    /** What a notification shows. */
    public enum Kind {
        /**
         * A text message ({@code m.text}, {@code m.notice}, {@code m.emote}, …): its text is
         * {@link Notification#body()}.
         */
        MESSAGE("message"),
        /** A file, image, video or voice message: shown as "a file" (no name, no body). */
        FILE("file"),
        /** An invitation of this user to the room. */
        INVITE("invite"),
        /** A key verification request. */
        VERIFICATION("verification"),
        /**
         * Another event (a reaction, a state change, …): {@link Notification#eventType()} says
         * which.
         */
        OTHER("other");

        private final String wire;

        Kind(String wire) {
            this.wire = wire;
        }

        /** From the native row's name; an unknown one is a contract mismatch. */
        static Kind fromWire(String wire) {
            for (Kind k : values()) {
                if (k.wire.equals(wire)) {
                    return k;
                }
            }
            throw new IllegalStateException("native notification row: unknown kind " + wire
                    + " (Java classes and libtchap_secure.so out of step?)");
        }
    }

    private final String roomId;
    private final String eventId;
    private final String sender;
    private final String senderName;
    private final String roomName;
    private final Kind kind;
    private final String eventType;
    private final String body;
    private final String trust;
    private final String senderDevice;
    private final long originServerTs;
    private final boolean notifies;
    private final boolean highlight;
    private final String sound;
    private final DisplayName senderDisplayName;

    Notification(String roomId, String eventId, String sender, String senderName,
            String roomName, Kind kind, String eventType, String body, String trust,
            String senderDevice, long originServerTs, boolean notifies, boolean highlight,
            String sound, DisplayName senderDisplayName) {
        this.roomId = Objects.requireNonNull(roomId, "roomId");
        this.eventId = Objects.requireNonNull(eventId, "eventId");
        this.sender = Objects.requireNonNull(sender, "sender");
        this.senderName = senderName;
        this.roomName = roomName;
        this.kind = Objects.requireNonNull(kind, "kind");
        this.eventType = Objects.requireNonNull(eventType, "eventType");
        this.body = body;
        this.trust = trust;
        this.senderDevice = senderDevice;
        this.originServerTs = originServerTs;
        this.notifies = notifies;
        this.highlight = highlight;
        this.sound = sound;
        this.senderDisplayName = Objects.requireNonNull(senderDisplayName, "senderDisplayName");
    }

    /**
     * From a native row {@code {roomId, eventId, sender, senderName|null, roomName|null, kind,
     * eventType, body|null, trust|null, senderDevice|null, originServerTs, notify, highlight,
     * sound|null, senderOrganisation|null, senderNameIssues}}.
     */
    static Notification fromRow(String[] row) {
        Rows.requireColumns(row, 16, "notification");
        return new Notification(
                Rows.required(row, 0, "notification", "roomId"),
                Rows.required(row, 1, "notification", "eventId"),
                Rows.required(row, 2, "notification", "sender"),
                row[3],
                row[4],
                Kind.fromWire(Rows.required(row, 5, "notification", "kind")),
                Rows.required(row, 6, "notification", "eventType"),
                row[7],
                row[8],
                row[9],
                Rows.size(row, 10, "notification", "originServerTs"),
                Rows.bool(row, 11, "notification", "notify"),
                Rows.bool(row, 12, "notification", "highlight"),
                row[13],
                DisplayName.fromCells(Rows.required(row, 3, "notification", "senderName"),
                        row[14], row[15], "notification"));
    }

    public String roomId() {
        return roomId;
    }

    public String eventId() {
        return eventId;
    }

    /** The sender's user id. */
    public String sender() {
        return sender;
    }

    /**
     * The sender's name as shown: neutralised, without the organisation (the user id's
     * localpart when they set no display name).
     */
    public String senderName() {
        return senderName;
    }

    /** The sender's organisation, or null when there is none or it is ambiguous. */
    public String senderOrganisation() {
        return senderDisplayName.organisation();
    }

    /** The sender's name, organisation and what the parser found in them. */
    public DisplayName senderDisplayName() {
        return senderDisplayName;
    }

    /** The room's name, if it has one and this device has seen it; else null. */
    public String roomName() {
        return roomName;
    }

    public Kind kind() {
        return kind;
    }

    /** The decrypted event's type ({@code m.room.message}, …). */
    public String eventType() {
        return eventType;
    }

    /** The text of a {@link Kind#MESSAGE}; null for every other kind. */
    public String body() {
        return body;
    }

    /**
     * Trust in the sending device, as {@link Message#trust()}; null for an event in clear
     * (an invitation).
     */
    public String trust() {
        return trust;
    }

    /** The sending device's id (from the Olm-verified room key), or null. */
    public String senderDevice() {
        return senderDevice;
    }

    /** The server's timestamp, in milliseconds since the epoch; 0 if unknown. */
    public long originServerTs() {
        return originServerTs;
    }

    /**
     * Whether the account's push rules, evaluated on the device on the decrypted event, say it
     * notifies: a direct message, a mention of the member's user id or display name (also in a
     * muted room), a keyword; not a message in a muted room. A pushed event that does not
     * notify is shown silently or not at all, as the app decides. Every notification
     * {@link Listener#onNotification} receives notifies. (Not named {@code notify()}:
     * {@link Object#notify()} is final.)
     */
    public boolean notifies() {
        return notifies;
    }

    /** Whether the rules ask for it to be highlighted (a mention, a keyword). */
    public boolean highlight() {
        return highlight;
    }

    /** The sound the rules ask for ({@code "default"}), or null for none. */
    public String sound() {
        return sound;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Notification)) {
            return false;
        }
        Notification n = (Notification) o;
        return roomId.equals(n.roomId) && eventId.equals(n.eventId) && sender.equals(n.sender)
                && Objects.equals(senderName, n.senderName)
                && Objects.equals(roomName, n.roomName) && kind == n.kind
                && eventType.equals(n.eventType) && Objects.equals(body, n.body)
                && Objects.equals(trust, n.trust) && Objects.equals(senderDevice, n.senderDevice)
                && originServerTs == n.originServerTs && notifies == n.notifies
                && highlight == n.highlight && Objects.equals(sound, n.sound);
    }

    @Override
    public int hashCode() {
        return Objects.hash(roomId, eventId, sender, senderName, roomName, kind, eventType, body,
                trust, senderDevice, originServerTs, notifies, highlight, sound);
    }

    /** Never contains the body, nor the names (plaintext must not reach logs). */
    @Override
    public String toString() {
        return "Notification{" + kind + " " + eventType + " " + eventId + " in " + roomId
                + " from " + sender + "/" + senderDevice + ", trust " + trust + ", body "
                + (body == null ? "null" : body.length() + " chars")
                + (notifies ? ", notifies" : ", silent") + (highlight ? ", highlight" : "")
                + ", sound " + sound + "}";
    }
}
