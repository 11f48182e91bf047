package fr.gouv.tchap.secure;

/**
 * Receives what the background sync produces. Called on the library's dedicated sync thread
 * (never the UI thread): implementations hand work over to their own threads and return fast.
 */
public interface Listener {
    /**
     * A message was decrypted (new, or an earlier one whose key arrived late); {@code trust}
     * is the sending device's, as {@link Message#trust()}.
     */
    void onMessage(String roomId, String eventId, String sender, String senderDisplayName,
            String body, String trust);

    /**
     * A message or an invitation the sync brought notifies, per the account's push rules
     * evaluated on the device on the decrypted event: a direct message, a mention of the
     * member's user id or display name (even in a muted room), a keyword — not a message in a
     * muted room. Called for every such event, already decrypted
     * ({@link Notification#notifies()} is always true here; {@link Notification#highlight()}
     * for a mention or a keyword), after {@link #onMessage} for the same sync round: the
     * message is in the store when this runs. When the app runs without a push distributor
     * (persistent mode: the sync thread kept running in a foreground service, with
     * {@link SyncMode#PERSISTENT}), it shows a local notification from it; with one, pushes and
     * {@link SecureClient#notification} do that job and this may be left alone. Runs on the
     * sync thread like every callback: it must return quickly. Does nothing unless overridden.
     */
    default void onNotification(Notification notification) {}

    /**
     * A message's shown text changed: its sender's valid edit arrived. {@code message} is the
     * message as {@link SecureClient#messages} now lists it — same {@link Message#eventId()},
     * the new {@link Message#body()}, {@link Message#edited()} true; the former text is erased
     * from this device. The edit itself is never a message of its own. A message new in this
     * sync round comes already edited through {@link #onMessage}, not here. Edits that are
     * refused (another sender, another room, an edit of an edit or of a deleted message) are
     * journaled ({@link #onSecurityEvent} {@code edit_refused}) and change nothing. Called
     * after {@link #onMessage} for the same sync round. Does nothing unless overridden.
     *
     * @param roomId the message's room
     */
    default void onEdited(String roomId, Message message) {}

    /**
     * An event was deleted for everyone (by its sender, or a member with the room's power to
     * redact): its text, its edits' text and its attachment are erased from this device, and
     * {@link SecureClient#messages} shows it as {@link Message#REDACTED}, without a body. A
     * redaction by a member without that power is refused and journaled
     * ({@link #onSecurityEvent} {@code redaction_refused}) and changes nothing. Called after
     * {@link #onMessage} for the same sync round. Does nothing unless overridden.
     *
     * @param redactedBy the user id of the member who deleted it
     */
    default void onRedacted(String roomId, String eventId, String redactedBy) {}

    /**
     * {@code count} messages outlived their room's message lifetime ({@link Retention}) and
     * were purged from this device after a sync round: their text, their edits' text and their
     * attachment are erased, and {@link SecureClient#messages} shows them
     * {@link Message#EXPIRED}, without a body. Reload the rooms on screen. A running sync
     * purges within a second or so of a message's deadline (its long poll never waits past
     * it); while it is stopped, see {@link SecureClient#nextExpiry()}. Called after
     * {@link #onRedacted} for the same sync round, only when {@code count > 0}. Does nothing
     * unless overridden.
     */
    default void onExpired(int count) {}

    /**
     * One of our outgoing messages changed state: {@code "sent"} (the server accepted it;
     * {@code eventId} set) or {@code "failed"} (refused for good or cancelled; {@code error}
     * is {@code forbidden}, {@code not_found}, {@code too_large}, {@code refused} or
     * {@code left_room}). {@code localId} is the one of {@link Message#localId()} and of
     * {@link TchapSecureException#getLocalId()}. Does nothing unless overridden.
     */
    default void onSendState(String roomId, String localId, String state, String eventId,
            String error) {}

    /**
     * A verification flow changed in a sync: a request arrived ({@link Verification#RECEIVED}),
     * the other side accepted, the emoji are there to compare, the flow is done or cancelled.
     * Called after {@link #onMessage} for the same sync round. The current state of any flow
     * is also at {@link SecureClient#verification}. Does nothing unless overridden.
     */
    default void onVerification(Verification verification) {}

    /** A security event was journaled (refused event, key change, new device, …). */
    void onSecurityEvent(String kind, String roomId, String userId, String detail);

    /**
     * The sync state changed: {@code "running"}, {@code "retrying"} (network failure, backing
     * off), {@code "stopped"}, or {@code "failed"} (a fatal error, {@code errorCode} set).
     */
    void onSyncState(String state, String errorCode);
}
