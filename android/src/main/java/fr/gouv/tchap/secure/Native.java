package fr.gouv.tchap.secure;

/**
 * The whole JNI surface of {@code libtchap_secure.so}: one class of static native methods
 * (libsignal's pattern). Package-private: applications use {@link SecureClient}.
 *
 * <p>Handles are opaque {@code long}s owned by {@link SecureClient}, freed exactly once by
 * {@link #clientClose}. Every method that can fail throws {@link TchapSecureException} with a
 * stable error code; a panic inside the library surfaces the same way (code {@code "panic"}).
 * Secrets (password, token PIN) cross as {@code byte[]}, never as {@code String}; the caller
 * zeroes them after the call, the library zeroes its copies.
 *
 * <p>Tables come back as {@code String[][]} rows (no JSON parser needed on the Java side);
 * the column order of each is documented on the method.
 *
 * <p>File descriptors ({@code int fd}): ownership passes to the library with the call. Once a
 * method receives an open descriptor {@code >= 3}, the library closes it when the call ends,
 * on success or failure; the caller must neither use nor close it again (on Android:
 * {@code ParcelFileDescriptor.detachFd()}). A negative number, 0, 1, 2 or a number that is not
 * an open descriptor is refused ({@code invalid_argument}) and left alone. File contents never
 * cross into the JVM: they are streamed natively between the descriptor (or path) and the
 * network.
 */
final class Native {
    private Native() {}

    // --- configuration -------------------------------------------------------------------

    /** Every key the native configuration validator accepts (for the MDM restrictions check). */
    static native String[] configKeys();

    /** Validates a configuration document (the MDM JSON); throws with code {@code "config"}. */
    static native String[] checkConfig(byte[] configJson) throws TchapSecureException;

    // --- client lifecycle ------------------------------------------------------------------

    /**
     * Opens (creating on first use) the data directory with the configuration and the
     * hardware key binder, restores the saved session if any. Returns the client handle.
     */
    static native long clientOpen(byte[] configJson, String dataDir, KeyBinder binder)
            throws TchapSecureException;

    /** Stops the sync thread if running and frees the handle. Must be called exactly once. */
    static native void clientClose(long client);

    // --- session ---------------------------------------------------------------------------

    /** Logs in; returns {@code {userId, deviceId}}. The password array is read, not kept. */
    static native String[] login(long client, String user, byte[] password, String deviceName)
            throws TchapSecureException;

    /** Logs in by the work e-mail address; returns {@code {userId, deviceId}}. */
    static native String[] loginWithEmail(
            long client, String address, byte[] password, String deviceName)
            throws TchapSecureException;

    /** The restored or current session {@code {userId, deviceId}}, or null if logged out. */
    static native String[] session(long client) throws TchapSecureException;

    /** {@code GET /account/whoami}: the user id the server sees. */
    static native String whoami(long client) throws TchapSecureException;

    /** Logs out on the server and forgets the session and its keys. */
    static native void logout(long client) throws TchapSecureException;

    // --- rooms and messages ----------------------------------------------------------------

    /** One sync round trip (long-poll up to {@code timeoutMs}), applied atomically. */
    static native void syncOnce(long client, int timeoutMs) throws TchapSecureException;

    /**
     * Joined and invited rooms. Rows: {@code {roomId, membership, name|null,
     * encryption|null, joinedMembers, invitedMembers}}.
     */
    static native String[][] rooms(long client) throws TchapSecureException;

    /** Creates an encrypted room (name may be null), inviting {@code invite}; returns its id. */
    static native String createRoom(long client, String name, String[] invite)
            throws TchapSecureException;

    static native void invite(long client, String roomId, String userId) throws TchapSecureException;

    static native void join(long client, String roomId) throws TchapSecureException;

    static native void leave(long client, String roomId) throws TchapSecureException;

    /**
     * Sends an encrypted text message; returns its event id. Throws {@code send_queued} (kept
     * in the queue, sent by a later sync) or {@code send_failed} (refused for good); both
     * exceptions carry the message's local id and the reason.
     */
    static native String send(long client, String roomId, String body) throws TchapSecureException;

    /**
     * {@link #send} naming {@code userIds} in the message's encrypted {@code m.mentions}: their
     * push rules notify them by id, whatever the text says.
     */
    static native String sendMentioning(long client, String roomId, String body,
            String[] userIds) throws TchapSecureException;

    /**
     * Sends {@code body} as a reply to {@code eventId} (a readable message of the room),
     * mentioning its sender; returns the reply's event id. Sent as {@link #send} (same
     * exceptions); the relation travels encrypted. Throws {@code unknown_event} or
     * {@code event_redacted} before anything is sent.
     */
    static native String reply(long client, String roomId, String eventId, String body)
            throws TchapSecureException;

    /**
     * Replaces the text of our own message {@code eventId} for everyone; returns the edit's
     * event id. Sent as {@link #send}. Throws {@code edit_not_allowed} (not our own text
     * message), {@code unknown_event} or {@code event_redacted} before anything is sent.
     */
    static native String edit(long client, String roomId, String eventId, String body)
            throws TchapSecureException;

    /**
     * Deletes {@code eventId} for everyone: erased on this device before the call returns,
     * whatever happens to the redaction. Row of 3 columns: {@code {state, id|null,
     * reason|null}}; state is {@code sent} (id: the redaction's event id), {@code queued} (id:
     * its local id, sent by a later sync), {@code failed} (id: its local id, reason: why the
     * server refused it) or {@code never_sent} (our message was still queued: it never goes
     * out). {@code reason} may be null; a reason travels in clear and is refused
     * ({@code reason_in_clear_refused}) unless the configuration allows it. Other refusals:
     * {@code redaction_not_allowed}, {@code redaction_other_room}, {@code unknown_event},
     * {@code event_redacted}.
     */
    static native String[] redact(long client, String roomId, String eventId, String reason)
            throws TchapSecureException;

    /**
     * The last {@code limit} events of a room from the local store, oldest first. Rows of 15
     * columns: {@code {eventId, sender, senderDisplayName|null, state, body|null, trust|null,
     * senderDevice|null, localId|null, error|null, attachmentMsgtype|null,
     * attachmentName|null, attachmentMimetype|null, attachmentSize|null, replyTo|null,
     * edited}}; state is {@code decrypted}, {@code undecryptable}, {@code refused},
     * {@code redacted} (deleted for everyone: no body, no attachment) or {@code expired}
     * (outlived its room's message lifetime: no body, no attachment), or for our own message
     * before the sync returns it {@code queued}, {@code sent} or {@code failed} (its eventId is
     * then a local one until sent; localId is set on our own messages); replyTo is the event
     * the message answers, edited {@code true|false} (body is then the latest edit's text). An
     * edit is not a row of its own.
     */
    static native String[][] messages(long client, String roomId, int limit)
            throws TchapSecureException;

    /**
     * Loads up to {@code limit} messages older than everything stored in the room from the
     * server (scroll-back), decrypted and checked like the sync's. Row 0 is
     * {@code {reachedStart}} ({@code true|false}); the next rows are message rows (as
     * {@link #messages}) of the events newly stored, oldest first.
     */
    static native String[][] loadOlder(long client, String roomId, int limit)
            throws TchapSecureException;

    // --- read state and disappearing messages ---------------------------------------------

    /**
     * Marks the room read up to {@code eventId} (a stored event of the room, else
     * {@code unknown_event}): here at once — our read position never moves back — and on the
     * server through the room's queue ({@code m.fully_read}, plus the receipt the managed
     * configuration allows: {@code m.read}, {@code m.read.private} or none).
     */
    static native void markRead(long client, String roomId, String eventId)
            throws TchapSecureException;

    /**
     * The room's unread state, computed on the device on the decrypted messages after our read
     * position (no network). Row of 3 columns: {@code {messages, notify, highlight}}, counts
     * (at most 999).
     */
    static native String[] unread(long client, String roomId) throws TchapSecureException;

    /**
     * The room's read markers (no network). Row of 2 columns: {@code {readEventId|null,
     * fullyReadEventId|null}}: the event our read receipt points at (from any of our devices),
     * and the {@code m.fully_read} marker.
     */
    static native String[] readMarkers(long client, String roomId) throws TchapSecureException;

    /**
     * The receipt this device sends, per the managed configuration: {@code public},
     * {@code private} or {@code off} ({@link ReadReceipts#fromWire}).
     */
    static native String readReceipts(long client) throws TchapSecureException;

    /**
     * The room's message lifetime as this device honours it (no network). Row of 3 columns:
     * {@code {roomMs|null, ceilingMs|null, effectiveMs|null}}, milliseconds: the room's own
     * {@code max_lifetime}, the managed configuration's ceiling, and what is honoured (the
     * smaller, never under 30 s; null: messages are kept).
     */
    static native String[] retention(long client, String roomId) throws TchapSecureException;

    /**
     * Sets the room's message lifetime for every member ({@code m.room.retention}), applied
     * here at once; {@code lifetimeMs} -1 removes it (another negative value:
     * {@code invalid_argument}). Throws {@code retention_not_allowed} (no power level for it)
     * or {@code retention_too_short} (under 30 000 ms) before anything is sent.
     */
    static native void setRetention(long client, String roomId, long lifetimeMs)
            throws TchapSecureException;

    /** Purges every message whose lifetime is over; returns how many. */
    static native int purgeExpired(long client) throws TchapSecureException;

    /**
     * When the next message expires, in milliseconds since the epoch as a decimal string, or
     * null if none will (no network).
     */
    static native String nextExpiry(long client) throws TchapSecureException;

    // --- attachments -----------------------------------------------------------------------

    /**
     * Encrypts the file read from {@code fd} (from its current offset) while uploading it, and
     * sends its {@code m.file} ({@code m.image} for {@code image/*}); returns the event id.
     * {@code length}: the exact number of bytes {@code fd} yields, or -1 for the rest of a
     * regular file. Takes ownership of {@code fd} (class documentation). {@code mimetype} may
     * be null.
     */
    static native String sendFileFd(long client, String roomId, int fd, long length, String name,
            String mimetype) throws TchapSecureException;

    /** {@link #sendFileFd} for the file at {@code path}; {@code name} null: its file name. */
    static native String sendFilePath(long client, String roomId, String path, String name,
            String mimetype) throws TchapSecureException;

    /**
     * Downloads the attachment of {@code eventId} through the content scanner, verifies and
     * decrypts it into {@code fd}; returns its length. Nothing is written unless the scanner
     * found it clean and the whole ciphertext matched its hash; a non-empty regular file is
     * refused ({@code file_exists}). Takes ownership of {@code fd} (class documentation).
     */
    static native long downloadFileFd(long client, String roomId, String eventId, int fd)
            throws TchapSecureException;

    /**
     * {@link #downloadFileFd} into a new file at {@code path}, which appears only complete and
     * verified; an existing file is never overwritten ({@code file_exists}).
     */
    static native long downloadFilePath(long client, String roomId, String eventId, String path)
            throws TchapSecureException;

    /**
     * Takes ownership of {@code fd} and closes it: for a method taking a descriptor that fails
     * before reaching the library, so that the ownership contract holds on every path.
     */
    static native void closeFd(int fd) throws TchapSecureException;

    /**
     * A user's devices after a fresh query. Rows: {@code {deviceId, ed25519, state, deleted,
     * displayName|null, trust, crossSigned}}; state is {@code tofu} or {@code blocked}, deleted
     * and crossSigned {@code true|false}, trust one of {@code verified}, {@code identity_pinned},
     * {@code unsigned}, {@code identity_changed}, {@code tofu}, {@code blocked},
     * {@code unknown} (see {@link Device#trust()}).
     */
    static native String[][] devices(long client, String userId) throws TchapSecureException;

    // --- cross-signing ---------------------------------------------------------------------

    /**
     * Where our cross-signing identity stands (no network): {@code {master|null,
     * hasPrivateKeys, deviceSigned, identity|null}}, booleans {@code true|false}, identity
     * {@code pinned}, {@code verified} or {@code changed}.
     */
    static native String[] crossSigningStatus(long client) throws TchapSecureException;

    /**
     * Creates and publishes our identity if the account has none and signs this device with
     * it, or finishes an interrupted bootstrap or reset; returns the status row (as
     * {@link #crossSigningStatus}). {@code password} may be null; a given array is zeroed
     * before the network call.
     */
    static native String[] bootstrapCrossSigning(long client, byte[] password)
            throws TchapSecureException;

    /**
     * Replaces our identity with a new one (user-interactive authentication by the account
     * password, which is zeroed before the network call); returns the status row.
     */
    static native String[] resetCrossSigning(long client, byte[] password)
            throws TchapSecureException;

    /**
     * A user's cross-signing identity as pinned here (no network): {@code {userId, master,
     * selfSigning|null, state, changedMaster|null}}, state {@code pinned}, {@code verified} or
     * {@code changed}; null if none.
     */
    static native String[] identity(long client, String userId) throws TchapSecureException;

    /**
     * Accepts {@code userId}'s changed identity whose new master key is {@code master}, where
     * the configuration allows it; returns the identity row as pinned now.
     */
    static native String[] acknowledgeIdentityChange(long client, String userId, String master)
            throws TchapSecureException;

    // --- push ------------------------------------------------------------------------------

    /** Registers this device's pusher towards the configuration's push gateway. */
    static native void registerPusher(long client, String appId, String pushkey,
            String deviceName) throws TchapSecureException;

    /** Removes this device's pushers from the homeserver; returns how many. */
    static native int unregisterPushers(long client) throws TchapSecureException;

    /**
     * The account's pushers on the homeserver. Rows: {@code {appId, pushkey, kind, url|null,
     * format|null, registeredHere}}, registeredHere {@code true|false}.
     */
    static native String[][] pushers(long client) throws TchapSecureException;

    /**
     * The notification for the event a push announced: fetched over the pinned transport and
     * decrypted, waiting up to {@code waitMs} (at most 30 000) for its room key; a negative or
     * longer wait throws {@code invalid_argument}. Row of 14 columns: {@code {roomId, eventId,
     * sender, senderName|null, roomName|null, kind, eventType, body|null, trust|null,
     * senderDevice|null, originServerTs, notify, highlight, sound|null}}; kind is
     * {@code message}, {@code file}, {@code invite}, {@code verification} or {@code other},
     * originServerTs milliseconds (0 if unknown), notify and highlight {@code true|false} (the
     * push rules' decision). Throws {@code cannot_decrypt_yet} or {@code notification_refused}
     * among others.
     */
    static native String[] notification(long client, String roomId, String eventId, int waitMs)
            throws TchapSecureException;

    // --- interactive verification ----------------------------------------------------------

    /**
     * Asks {@code userId} to verify (our own user id: our other devices), in {@code roomId} or
     * to-device when it is null; returns the flow id.
     */
    static native String requestVerification(long client, String userId, String roomId)
            throws TchapSecureException;

    /** Asks one device of {@code userId} to verify (to-device); returns the flow id. */
    static native String requestDeviceVerification(long client, String userId, String deviceId)
            throws TchapSecureException;

    /**
     * Accepts a request we received; returns the flow's row. Verification rows: 16 fixed
     * columns {@code {flowId, userId, deviceId|null, roomId|null, weRequested, state,
     * decimal1|null, decimal2|null, decimal3|null, cancelCode|null, cancelReason|null,
     * cancelledByUs|null, error|null, methodCount, emojiCount|null, verifiedCount}} (booleans
     * {@code true|false}; emojiCount null until the SAS keys are exchanged), then
     * {@code methodCount} cells of the other side's methods, {@code emojiCount} pairs
     * {@code symbol, description}, and {@code verifiedCount} cells of what the flow verified
     * ({@link Verification#fromRow}). The same rows for every method below returning
     * {@code String[]}; an unknown flow id throws {@code invalid_argument}.
     */
    static native String[] acceptVerification(long client, String flowId)
            throws TchapSecureException;

    /** Starts SAS on a ready flow. */
    static native String[] startSas(long client, String flowId) throws TchapSecureException;

    /** Our user says the emoji (or numbers) match. */
    static native String[] confirmSas(long client, String flowId) throws TchapSecureException;

    /** Our user says they do not match: cancelled ({@code m.mismatched_sas}), journaled. */
    static native String[] sasMismatch(long client, String flowId) throws TchapSecureException;

    /** Cancels (or declines) a flow. */
    static native String[] cancelVerification(long client, String flowId)
            throws TchapSecureException;

    /** The QR code's payload to render, on a ready flow. */
    static native byte[] showQr(long client, String flowId) throws TchapSecureException;

    /** The other side's QR code payload, as scanned. */
    static native String[] scanQr(long client, String flowId, byte[] payload)
            throws TchapSecureException;

    /** Our user confirms the other side scanned our QR code. */
    static native String[] confirmQrScanned(long client, String flowId)
            throws TchapSecureException;

    /** The flow's row (as {@link #acceptVerification}), or null if unknown (no network). */
    static native String[] verification(long client, String flowId) throws TchapSecureException;

    /** Every flow this client knows, one verification row each (no network). */
    static native String[][] verifications(long client) throws TchapSecureException;

    // --- background sync -------------------------------------------------------------------

    /**
     * Starts syncing on a dedicated native thread attached to the JVM; {@code listener} is
     * called on that thread (an event that notifies through
     * {@link NativeListener#onNotificationRow}, with the row of {@link #notification}; a changed
     * verification flow through {@link NativeListener#onVerificationRow}, with the row of
     * {@link #verification}; an edited message through {@link NativeListener#onEditedRow},
     * with its room id and the row of {@link #messages}; messages purged after a round, as
     * they outlived their room's lifetime, through {@link Listener#onExpired} with their
     * count). At most one sync thread per client.
     * {@code mode} is
     * {@link SyncMode#wire} ({@code interactive} or {@code persistent}).
     */
    static native void startSync(long client, NativeListener listener, String mode)
            throws TchapSecureException;

    /**
     * Stops the sync thread and waits for it (callbacks stop before this returns); a long poll
     * or a back-off in progress is abandoned at once.
     */
    static native void stopSync(long client) throws TchapSecureException;

    /**
     * The network is back: a sync thread backing off retries now, from the shortest back-off
     * again. Nothing happens otherwise (no sync thread, or one long-polling).
     */
    static native void networkAvailable(long client) throws TchapSecureException;

    // --- Tchap identity (issue 19) ------------------------------------------------------------

    /** Why the account is locked: {@code expired}, {@code revoked}, or null (no network). */
    static native String accountLock(long client) throws TchapSecureException;

    /** Asks the homeserver for the renewal e-mail of an expired account. */
    static native void requestRenewal(long client) throws TchapSecureException;

    /** {@code true} if the client is (now) unlocked; {@code false} if still expired or revoked. */
    static native String resume(long client) throws TchapSecureException;

    /**
     * The member's devices {@code {deviceId, displayName|null, lastSeenTs|null,
     * lastSeenIp|null, current}}, the most recently seen first.
     */
    static native String[][] ownDevices(long client) throws TchapSecureException;

    /** Logs other devices out; {@code password} may be null, a given array is zeroed. */
    static native void logOutDevices(long client, String[] deviceIds, byte[] password)
            throws TchapSecureException;

    /**
     * The user directory: row 0 {@code {limited}}, then {@code {userId, displayName|null, name,
     * organisation|null, nameIssues}}.
     */
    static native String[][] searchDirectory(long client, String term, int limit)
            throws TchapSecureException;

    /** The user an e-mail address belongs to (hashed lookup), or null. */
    static native String lookupEmail(long client, String address) throws TchapSecureException;

    /** Invites the user an e-mail address belongs to; returns their id. */
    static native String inviteByEmail(long client, String roomId, String address)
            throws TchapSecureException;

    /** The direct chat with a user, existing or new: {@code {roomId, created}}. */
    static native String[] openDirectRoom(long client, String userId)
            throws TchapSecureException;

    /**
     * A room's members {@code {userId, membership, displayName|null, name, organisation|null,
     * nameIssues}}, by user id.
     */
    static native String[][] members(long client, String roomId) throws TchapSecureException;

    // --- wipe --------------------------------------------------------------------------------

    /**
     * Crypto-shreds the data directory: the KEK is destroyed through the key binder, the vault
     * file and the database deleted. The handle stays valid only for {@link #clientClose}.
     */
    static native void wipe(long client) throws TchapSecureException;

    // --- test support --------------------------------------------------------------------

    /**
     * Panics inside the library, to prove a panic becomes a {@link TchapSecureException}
     * (code {@code "panic"}). Exists only in debug builds of the library: a release library
     * does not export it ({@link UnsatisfiedLinkError}).
     */
    static native void testPanic() throws TchapSecureException;
}
