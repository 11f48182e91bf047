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
