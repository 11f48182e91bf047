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
