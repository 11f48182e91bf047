package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * One timeline event of a room, from the local store. Immutable.
 *
 * <p>A reply knows the message it answers ({@link #replyTo()}); an edited message shows its
 * latest valid edit's text ({@link #edited()}), the edit itself being no message of its own; a
 * message deleted for everyone stays as a tombstone ({@link #REDACTED}) without body or
 * attachment, and so does one that outlived its room's message lifetime ({@link #EXPIRED},
 * see {@link Retention}).
 *
 * <p>Our own messages appear at once as a local echo: {@link #QUEUED} (waiting to go out),
 * {@link #SENT} (the server accepted it) or {@link #FAILED} (refused for good or cancelled,
 * {@link #error()} says why), then {@link #DECRYPTED} once the sync returns it. A local echo
 * has a {@link #localId()} (stable from the moment it is queued) and, until it is sent, a local
 * {@link #eventId()} (starting with {@code ~}).
 */
public final class Message {
    /** {@link #state()}: the event was decrypted and its sender checked. */
    public static final String DECRYPTED = "decrypted";
    /** {@link #state()}: no key (yet) for this event; it may be decrypted later. */
    public static final String UNDECRYPTABLE = "undecryptable";
    /** {@link #state()}: the event was refused (replay, forged sender, wrong room, …). */
    public static final String REFUSED = "refused";
    /** {@link #state()}: our message, queued, not sent yet (retried by the sync). */
    public static final String QUEUED = "queued";
    /** {@link #state()}: our message, accepted by the server, not yet returned by the sync. */
    public static final String SENT = "sent";
    /** {@link #state()}: our message, refused for good or cancelled ({@link #error()}). */
    public static final String FAILED = "failed";
    /**
     * {@link #state()}: deleted for everyone (by its sender, or a member with the power to);
     * its text, its edits' text and its attachment are erased from this device.
     */
    public static final String REDACTED = "redacted";
    /**
     * {@link #state()}: outlived its room's message lifetime ({@link Retention#effective()}):
     * its text, its edits' text and its attachment are erased from this device, the event is
     * never fetched or decrypted again.
     */
    public static final String EXPIRED = "expired";

    private final String eventId;
    private final String sender;
    private final String senderDisplayName;
    private final String state;
    private final String body;
    private final String trust;
    private final String senderDevice;
    private final String localId;
    private final String error;
    private final Attachment attachment;
    private final String replyTo;
    private final boolean edited;
    private final DisplayName senderName;

    Message(String eventId, String sender, String senderDisplayName, String state, String body,
            String trust, String senderDevice, String localId, String error,
            Attachment attachment, String replyTo, boolean edited, DisplayName senderName) {
        this.eventId = Objects.requireNonNull(eventId, "eventId");
        this.sender = Objects.requireNonNull(sender, "sender");
        this.senderDisplayName = senderDisplayName;
        this.state = Objects.requireNonNull(state, "state");
        this.body = body;
        this.trust = trust;
        this.senderDevice = senderDevice;
        this.localId = localId;
        this.error = error;
        this.attachment = attachment;
        this.replyTo = replyTo;
        this.edited = edited;
        this.senderName = Objects.requireNonNull(senderName, "senderName");
    }

    /**
     * From a native row {@code {eventId, sender, senderDisplayName|null, state, body|null,
     * trust|null, senderDevice|null, localId|null, error|null, attachmentMsgtype|null,
     * attachmentName|null, attachmentMimetype|null, attachmentSize|null, replyTo|null,
     * edited, senderName, senderOrganisation|null, senderNameIssues}}.
     */
    static Message fromRow(String[] row) {
        Rows.requireColumns(row, 18, "messages");
        Attachment attachment = null;
        if (row[9] != null) {
            attachment = new Attachment(row[9],
                    Rows.required(row, 10, "messages", "attachmentName"), row[11],
                    row[12] == null ? -1 : Rows.size(row, 12, "messages", "attachmentSize"));
        }
        return new Message(
                Rows.required(row, 0, "messages", "eventId"),
                Rows.required(row, 1, "messages", "sender"),
                row[2],
                Rows.required(row, 3, "messages", "state"),
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                attachment,
                row[13],
                Rows.bool(row, 14, "messages", "edited"),
                DisplayName.fromCells(row[15], row[16], row[17], "messages"));
    }

    public String eventId() {
        return eventId;
    }

    /** The sender's user id. */
    public String sender() {
        return sender;
    }

    /**
     * The sender's display name as they set it ({@code Jean Martin [Ministère X]}), raw, or
     * null: show {@link #senderName()} instead.
     */
    public String senderDisplayName() {
        return senderDisplayName;
    }

    /** The sender's name and organisation, parsed, neutralised and checked. */
    public DisplayName senderName() {
        return senderName;
    }

    /**
     * {@link #DECRYPTED}, {@link #UNDECRYPTABLE}, {@link #REFUSED}, {@link #REDACTED} or
     * {@link #EXPIRED}; for a local echo of our own message {@link #QUEUED}, {@link #SENT} or
     * {@link #FAILED}.
     */
    public String state() {
        return state;
    }

    public boolean isDecrypted() {
        return DECRYPTED.equals(state);
    }

    /** Whether it was deleted for everyone ({@link #REDACTED}): no body, no attachment. */
    public boolean isRedacted() {
        return REDACTED.equals(state);
    }

    /**
     * Whether it outlived its room's message lifetime ({@link #EXPIRED}): no body, no
     * attachment.
     */
    public boolean isExpired() {
        return EXPIRED.equals(state);
    }

    /** Whether this is our own message not yet returned by the sync (queued, sent, failed). */
    public boolean isLocalEcho() {
        return QUEUED.equals(state) || SENT.equals(state) || FAILED.equals(state);
    }

    /**
     * The decrypted text (our own text for a local echo; for an {@link #edited()} message the
     * latest edit's), or null — always null once {@link #isRedacted()} or
     * {@link #isExpired()}.
     */
    public String body() {
        return body;
    }

    /**
     * Trust in the sending device when the message was decrypted: {@code own_device} (sent by
     * this device), or a {@link Device#trust()} value — {@link Device#VERIFIED},
     * {@link Device#IDENTITY_PINNED}, {@link Device#UNSIGNED}, {@link Device#IDENTITY_CHANGED},
     * {@link Device#TOFU}, {@link Device#BLOCKED} or {@link Device#UNKNOWN} (the device is
     * deleted, unknown here, or its key is not the one pinned); null when not decrypted.
     */
    public String trust() {
        return trust;
    }

    /** The sending device's id, or null. */
    public String senderDevice() {
        return senderDevice;
    }

    /**
     * Our own message: the local id it was queued under (as in
     * {@link TchapSecureException#getLocalId()} and {@link Listener#onSendState}); else null.
     */
    public String localId() {
        return localId;
    }

    /**
     * Why: for {@link #FAILED} the reason code ({@code forbidden}, {@code not_found},
     * {@code too_large}, {@code refused}, {@code left_room}); for {@link #REFUSED} or
     * {@link #UNDECRYPTABLE} what was refused or is awaited; else null.
     */
    public String error() {
        return error;
    }

    /** The file an {@code m.file} / {@code m.image} message announces, or null. */
    public Attachment attachment() {
        return attachment;
    }

    /**
     * The event id of the message this one replies to (from the encrypted relation: the server
     * never sees it), or null. That message may not be in the local store (older than what was
     * loaded), or may since have been deleted.
     */
    public String replyTo() {
        return replyTo;
    }

    /**
     * Whether its sender edited it: {@link #body()} is then the latest valid edit's text, the
     * earlier text erased from this device.
     */
    public boolean edited() {
        return edited;
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
                && Objects.equals(trust, m.trust) && Objects.equals(senderDevice, m.senderDevice)
                && Objects.equals(localId, m.localId) && Objects.equals(error, m.error)
                && Objects.equals(attachment, m.attachment)
                && Objects.equals(replyTo, m.replyTo) && edited == m.edited;
    }

    @Override
    public int hashCode() {
        return Objects.hash(eventId, sender, senderDisplayName, state, body, trust, senderDevice,
                localId, error, attachment, replyTo, edited);
    }

    /** Never contains the body (plaintext must not reach logs): only its length. */
    @Override
    public String toString() {
        return "Message{" + eventId + " from " + sender + "/" + senderDevice + ", " + state
                + (error == null ? "" : " (" + error + ")")
                + (localId == null ? "" : ", local " + localId)
                + ", trust " + trust + ", body " + (body == null ? "null" : body.length() + " chars")
                + (attachment == null ? "" : ", " + attachment)
                + (replyTo == null ? "" : ", reply to " + replyTo)
                + (edited ? ", edited" : "") + "}";
    }
}
