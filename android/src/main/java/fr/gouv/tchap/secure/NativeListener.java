package fr.gouv.tchap.secure;

/**
 * What the sync thread calls: a {@link Listener} plus the native forms of the callbacks whose
 * argument is a value class. Package-private: {@link SecureClient} passes its own
 * implementation to {@link Native#startSync}, which turns the rows into value classes and
 * calls the application's {@link Listener}.
 */
interface NativeListener extends Listener {
    /**
     * A message or invitation of the last sync round notifies per the push rules; {@code row}
     * as {@link Native#notification}.
     */
    void onNotificationRow(String[] row);

    /**
     * A verification flow changed in the last sync round; {@code row} as
     * {@link Native#verification}.
     */
    void onVerificationRow(String[] row);

    /**
     * A valid edit in the last sync round changed the shown text of a message of
     * {@code roomId}; {@code row} is the message as it now is, as in {@link Native#messages}.
     */
    void onEditedRow(String roomId, String[] row);
}
