package fr.gouv.tchap.secure;

/**
 * How the background sync polls the homeserver ({@link SecureClient#startSync(Listener,
 * SyncMode)}). A long poll returns as soon as the server has something for this client, so
 * neither mode delays messages: the mode sets how often an idle client asks, and how long it
 * waits between attempts while the network is down. To switch (the app goes to the background
 * or comes back), {@link SecureClient#stopSync()} then {@code startSync} with the other mode:
 * both return at once.
 */
public enum SyncMode {
    /**
     * The app is on screen: 2 s long polls (each round also sends the queued messages and tops
     * up the keys, so a message queued offline goes out within seconds), back-off from 1 s up
     * to 30 s while the network is down. What {@link SecureClient#startSync(Listener)} uses.
     */
    INTERACTIVE("interactive"),
    /**
     * No push distributor: the sync kept running in a foreground service, as frugal with the
     * battery as a sync can be — 60 s long polls (one request a minute when idle, over a
     * connection the library keeps alive) and a back-off from 1 s up to 5 minutes while the
     * network is down. Call {@link SecureClient#networkAvailable()} from the
     * {@code ConnectivityManager} network callback, so the sync resumes the moment the
     * network returns rather than at the end of its back-off.
     */
    PERSISTENT("persistent");

    /** The name {@link Native#startSync} takes. */
    final String wire;

    SyncMode(String wire) {
        this.wire = wire;
    }
}
