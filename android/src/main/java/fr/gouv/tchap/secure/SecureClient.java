package fr.gouv.tchap.secure;

import java.io.File;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The Tchap Secure client: one data directory, one hardware key binder, one Matrix session.
 * Everything security-relevant happens in {@code libtchap_secure.so}; this class only owns the
 * native handle and turns the library's rows into value classes.
 *
 * <h2>Handle discipline</h2>
 *
 * The native client is an opaque {@code long} handle (libsignal's {@code NativeHandleGuard}
 * pattern). Every method runs under the read half of a {@link ReentrantReadWriteLock} and
 * checks the handle first: after {@link #close()} every method throws
 * {@link IllegalStateException}. {@link #close()} marks the client closing (new calls are
 * refused at once), takes the write half — so it waits for the calls already inside the
 * library, and no call can start with a handle that is being freed — then calls
 * {@link Native#clientClose} exactly once. A second {@code close()} does nothing. Calls take
 * the read half with {@code tryLock()}, which never waits behind a pending {@code close()}
 * (see {@code call}), so closing cannot deadlock with a callback that calls in.
 *
 * <p>Methods may be called from any thread, concurrently; they block on network I/O, so never
 * call them on the Android main thread.
 *
 * <h2>Listener callbacks</h2>
 *
 * {@link Listener} methods run on the library's sync thread. They may call back into this
 * client (for instance {@link #messages}: the message is in the store when its callback runs;
 * such a call throws {@link IllegalStateException} once the client is closing), but must not
 * call {@link #close()},
 * {@link #stopSync()} or {@link #wipe()} — those wait for the sync thread, that is, for the
 * callback itself; doing so throws {@link IllegalStateException} instead of deadlocking. A
 * {@link RuntimeException} thrown by a listener is handed to the sync thread's
 * {@link Thread.UncaughtExceptionHandler} (as for any thread) and never reaches the library.
 *
 * <h2>Secrets</h2>
 *
 * The password is a {@code byte[]} (UTF-8) that {@link #login}, {@link #bootstrapCrossSigning}
 * and {@link #resetCrossSigning} zero before returning, whatever happens. No method takes or
 * returns key material (only public keys) — except the QR code payload of {@link #showQr} and
 * {@link #scanQr}, shown on a screen by design: public keys and a one-time secret good for that
 * one flow only.
 */
public final class SecureClient implements AutoCloseable {
    private static final Object LOAD_LOCK = new Object();
    /** Where the library was loaded from ("" for {@code System.loadLibrary}); null if not yet. */
    private static volatile String loadedFrom;

    /** The client whose {@link Listener} callback the current thread is running, if any. */
    private static final ThreadLocal<SecureClient> IN_CALLBACK = new ThreadLocal<>();

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    /** The native handle; written under the write lock, read under the read lock; 0 = closed. */
    private long handle;
    /** Set first thing by close(): new calls are refused while close() waits for the others. */
    private volatile boolean closing;
    /** Set by a successful wipe(): the handle is then only good for clientClose. */
    private volatile boolean wiped;

    private SecureClient(long handle) {
        this.handle = handle;
    }

    // --- library ---------------------------------------------------------------------------

    /**
     * Loads {@code libtchap_secure.so} once per process. On Android pass null
     * ({@code System.loadLibrary("tchap_secure")}, from the APK's {@code lib/<abi>/}); on a host
     * pass the absolute path of the library ({@code System.load}). Later calls with the same
     * argument do nothing; a later call with another path is refused.
     *
     * @throws IllegalArgumentException if the path is not absolute
     * @throws IllegalStateException if the library was already loaded from elsewhere
     * @throws UnsatisfiedLinkError if the library cannot be loaded
     */
    public static void loadLibrary(String absolutePathOrNull) {
        String key = absolutePathOrNull == null ? "" : absolutePathOrNull;
        if (absolutePathOrNull != null && !new File(absolutePathOrNull).isAbsolute()) {
            throw new IllegalArgumentException("not an absolute path: " + absolutePathOrNull);
        }
        synchronized (LOAD_LOCK) {
            String previous = loadedFrom;
            if (previous != null) {
                if (!previous.equals(key)) {
                    throw new IllegalStateException("libtchap_secure already loaded from "
                            + (previous.isEmpty() ? "the APK" : previous));
                }
                return;
            }
            if (absolutePathOrNull == null) {
                System.loadLibrary("tchap_secure");
            } else {
                System.load(absolutePathOrNull);
            }
            loadedFrom = key;
        }
    }

    private static void requireLoaded() {
        if (loadedFrom == null) {
            throw new IllegalStateException("call SecureClient.loadLibrary first");
        }
    }

    /** Every configuration key the native validator accepts (the MDM restriction keys). */
    public static List<String> configKeys() {
        requireLoaded();
        return Collections.unmodifiableList(new ArrayList<>(Arrays.asList(Native.configKeys())));
    }

    /**
     * Validates a configuration document (the MDM JSON, see {@link ConfigJson}) without opening
     * anything.
     *
     * @return the codes of what the valid configuration does that weakens it, for the MDM
     *     administrator (empty when nothing): {@code anchor_pinned} (a pin that counts is a trust
     *     anchor's own key: a certificate mis-issued by that CA would pass; pin the server's or an
     *     intermediate's key and set {@code require_leaf_or_intermediate_pin}), {@code
     *     no_backup_pin} (only one pin counts), {@code no_scanner_keys} (no {@code
     *     content_scanner_keys}: received files cannot be opened)
     * @throws TchapSecureException code {@code config}, naming the offending key
     */
    public static List<String> checkConfig(byte[] configJson) throws TchapSecureException {
        requireLoaded();
        return Collections.unmodifiableList(Arrays.asList(
                Native.checkConfig(Objects.requireNonNull(configJson, "configJson"))));
    }

    /** Test hook: makes the library panic, to prove a panic becomes an exception. */
    static void testPanic() throws TchapSecureException {
        requireLoaded();
        Native.testPanic();
    }

    // --- lifecycle -------------------------------------------------------------------------

    /**
     * Opens the data directory (created on first use, mode 0700) with the configuration and the
     * hardware key binder, and restores the saved session if there is one. Does no network
     * I/O. On first use a new key-encryption key is generated through {@code binder}.
     *
     * @throws TchapSecureException e.g. {@code config}, {@code kek_not_found} or
     *     {@code unwrap} (the binder's key is not the one that sealed this directory), or
     *     {@code remote_wipe} (the MDM wipe nonce changed: the directory was crypto-shredded)
     */
    public static SecureClient open(byte[] configJson, File dataDir, KeyBinder binder)
            throws TchapSecureException {
        requireLoaded();
        Objects.requireNonNull(configJson, "configJson");
        Objects.requireNonNull(dataDir, "dataDir");
        Objects.requireNonNull(binder, "binder");
        long handle = Native.clientOpen(configJson, dataDir.getAbsolutePath(), binder);
        if (handle == 0) {
            throw new IllegalStateException("clientOpen returned a null handle");
        }
        return new SecureClient(handle);
    }

    /**
     * Stops the sync thread if running and frees the native client. Idempotent: a second call
     * does nothing. Waits for calls in progress on other threads to return; calls made after
     * this starts throw {@link IllegalStateException}.
     *
     * @throws IllegalStateException if called from a {@link Listener} callback (it would wait
     *     for itself)
     */
    @Override
    public synchronized void close() {
        rejectFromCallback("close()");
        closing = true;
        Lock write = lock.writeLock();
        write.lock();
        try {
            long h = handle;
            handle = 0;
            if (h != 0) {
                Native.clientClose(h);
            }
        } finally {
            write.unlock();
        }
    }

    /** Whether {@link #close()} was called. */
    public boolean isClosed() {
        return closing;
    }

    // --- session ---------------------------------------------------------------------------

    /**
     * Logs in with a password and saves the session (sealed by the hardware key).
     *
     * @param user a localpart or a full user id
     * @param password UTF-8 bytes; zeroed before this method returns or throws
     * @param deviceName the device's display name on the homeserver
     */
    public Session login(String user, byte[] password, String deviceName)
            throws TchapSecureException {
        try {
            Objects.requireNonNull(user, "user");
            Objects.requireNonNull(password, "password");
            Objects.requireNonNull(deviceName, "deviceName");
            return Session.fromRow(call(h -> Native.login(h, user, password, deviceName)));
        } finally {
            if (password != null) {
                Arrays.fill(password, (byte) 0);
            }
        }
    }

    /**
     * Logs in with the work e-mail address bound to the account (what Tchap users know, rather
     * than their Matrix id) and a password; the user id the server answers is checked against
     * the configuration's allowed domain.
     *
     * @param address the e-mail address (trimmed and lower-cased; an address that cannot be one
     *     is refused with {@code invalid_argument} before any request)
     * @param password UTF-8 bytes; zeroed before this method returns or throws
     * @param deviceName the device's display name on the homeserver
     */
    public Session loginWithEmail(String address, byte[] password, String deviceName)
            throws TchapSecureException {
        try {
            Objects.requireNonNull(address, "address");
            Objects.requireNonNull(password, "password");
            Objects.requireNonNull(deviceName, "deviceName");
            return Session.fromRow(
                    call(h -> Native.loginWithEmail(h, address, password, deviceName)));
        } finally {
            if (password != null) {
                Arrays.fill(password, (byte) 0);
            }
        }
    }

    /** The restored or current session, or null if logged out. */
    public Session session() throws TchapSecureException {
        return Session.fromRow(call(Native::session));
    }

    /** The user id the homeserver sees for this session ({@code GET /account/whoami}). */
    public String whoami() throws TchapSecureException {
        return call(Native::whoami);
    }

    /** Logs out on the server and forgets the session and its keys. */
    public void logout() throws TchapSecureException {
        call(h -> {
            Native.logout(h);
            return null;
        });
    }

    // --- rooms and messages ----------------------------------------------------------------

    /** One sync round trip, long-polling up to {@code timeoutMs}. */
    public void syncOnce(int timeoutMs) throws TchapSecureException {
        if (timeoutMs < 0) {
            throw new IllegalArgumentException("timeoutMs < 0");
        }
        call(h -> {
            Native.syncOnce(h, timeoutMs);
            return null;
        });
    }

    /** Joined and invited rooms. */
    public List<Room> rooms() throws TchapSecureException {
        String[][] rows = call(Native::rooms);
        List<Room> rooms = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            rooms.add(Room.fromRow(row));
        }
        return Collections.unmodifiableList(rooms);
    }

    /**
     * Creates an encrypted room (Megolm in its initial state), inviting {@code invite}.
     *
     * @param name the room name, or null
     * @param invite full user ids
     * @return the room id
     */
    public String createRoom(String name, String... invite) throws TchapSecureException {
        String[] invitees = invite == null ? new String[0] : invite.clone();
        for (String userId : invitees) {
            Objects.requireNonNull(userId, "invitee");
        }
        return call(h -> Native.createRoom(h, name, invitees));
    }

    public void invite(String roomId, String userId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(userId, "userId");
        call(h -> {
            Native.invite(h, roomId, userId);
            return null;
        });
    }

    public void join(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        call(h -> {
            Native.join(h, roomId);
            return null;
        });
    }

    public void leave(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        call(h -> {
            Native.leave(h, roomId);
            return null;
        });
    }

    /**
     * Sends an encrypted text message. It is in {@link #messages} at once as a local echo
     * ({@link Message#QUEUED}), whatever happens next.
     *
     * @return its event id
     * @throws TchapSecureException e.g. {@code unencrypted_room}: never sent in clear;
     *     {@link TchapSecureException#SEND_QUEUED}: not sent now, kept in the queue and sent by
     *     a later sync ({@link Listener#onSendState} reports it);
     *     {@link TchapSecureException#SEND_FAILED}: refused for good. For both,
     *     {@link TchapSecureException#getLocalId()} is the message's {@link Message#localId()}
     *     and {@link TchapSecureException#getReason()} the reason code.
     */
    public String send(String roomId, String body) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(body, "body");
        return call(h -> Native.send(h, roomId, body));
    }

    /**
     * {@link #send(String, String)} mentioning {@code mentions}: the user ids go in the
     * message's encrypted {@code m.mentions}, so their push rules notify them by id, whatever
     * the text says (and a name that merely appears in the text does not).
     *
     * @param mentions full user ids (may be empty)
     * @return its event id
     * @throws TchapSecureException as {@link #send(String, String)}
     */
    public String send(String roomId, String body, List<String> mentions)
            throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(body, "body");
        String[] userIds = Objects.requireNonNull(mentions, "mentions").toArray(new String[0]);
        for (String userId : userIds) {
            Objects.requireNonNull(userId, "mention");
        }
        return call(h -> Native.sendMentioning(h, roomId, body, userIds));
    }

    /**
     * Sends {@code body} as a reply to the message {@code eventId} of the room, mentioning its
     * sender; the others see it with {@link Message#replyTo()}. The relation travels encrypted
     * with the text: the server does not learn which message it answers.
     *
     * @return the reply's event id
     * @throws TchapSecureException before anything is sent: {@code unknown_event} (no readable
     *     message {@code eventId} in this room here), {@code event_redacted} (it was deleted);
     *     then as {@link #send(String, String)}
     */
    public String reply(String roomId, String eventId, String body)
            throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        Objects.requireNonNull(body, "body");
        return call(h -> Native.reply(h, roomId, eventId, body));
    }

    /**
     * Replaces the text of our own message {@code eventId} with {@code body}, for everyone:
     * here at once, on the others' devices when the edit reaches them
     * ({@link Listener#onEdited}). The former text is erased, not kept as a history; the
     * message shows {@link Message#edited()}.
     *
     * @return the edit's event id (not a message of its own: {@link #messages} lists the
     *     message {@code eventId}, with the new text)
     * @throws TchapSecureException before anything is sent: {@code edit_not_allowed} (not our
     *     own text message: another member's, or an edit), {@code unknown_event},
     *     {@code event_redacted}; then as {@link #send(String, String)}
     */
    public String edit(String roomId, String eventId, String body) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        Objects.requireNonNull(body, "body");
        return call(h -> Native.edit(h, roomId, eventId, body));
    }

    /**
     * Deletes the event {@code eventId} for everyone ("delete for everyone"). It is erased on
     * this device at once, in every case — its text, its edits' text, its attachment, before
     * this returns, whatever {@link Deletion#state()} says — and {@link #messages} shows it
     * {@link Message#REDACTED}. The redaction is
     * then sent in order with the room's messages: {@link Deletion.State#SENT},
     * {@link Deletion.State#QUEUED} (offline: sent by a later sync, retried),
     * {@link Deletion.State#FAILED} (the server refused it: the others still see the event),
     * or {@link Deletion.State#NEVER_SENT} (our own message was still queued: it simply never
     * goes out). One's own events, or any member's with the room's power level to redact.
     *
     * @throws TchapSecureException before anything is erased: {@code redaction_not_allowed}
     *     (another member's event without the power level), {@code redaction_other_room},
     *     {@code unknown_event}, {@code event_redacted} (already deleted)
     */
    public Deletion redact(String roomId, String eventId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        return Deletion.fromRow(call(h -> Native.redact(h, roomId, eventId, null)));
    }

    /**
     * {@link #redact(String, String)} with a reason. A redaction must be readable by the
     * server, so the reason travels <b>in clear</b>, out of the end-to-end encryption: it is
     * refused ({@code reason_in_clear_refused}, nothing erased, nothing sent) unless the
     * managed configuration allows it ({@code redaction_reason_in_clear}).
     *
     * @param reason shown to the other members, and readable by the homeserver
     * @throws TchapSecureException {@code reason_in_clear_refused}, or as
     *     {@link #redact(String, String)}
     */
    public Deletion redact(String roomId, String eventId, String reason)
            throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        Objects.requireNonNull(reason, "reason");
        return Deletion.fromRow(call(h -> Native.redact(h, roomId, eventId, reason)));
    }

    /** The last {@code limit} events of a room from the local store, oldest first. */
    public List<Message> messages(String roomId, int limit) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        if (limit < 0) {
            throw new IllegalArgumentException("limit < 0");
        }
        String[][] rows = call(h -> Native.messages(h, roomId, limit));
        List<Message> messages = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            messages.add(Message.fromRow(row));
        }
        return Collections.unmodifiableList(messages);
    }

    /**
     * Loads up to {@code limit} messages older than everything stored in the room from the
     * server (scroll-back, a newly joined room's first screen), decrypted and checked like the
     * sync's; they are stored, so {@link #messages} shows them afterwards. Call again while
     * {@link History#reachedStart()} is false to go further back.
     *
     * @throws TchapSecureException e.g. {@code invalid_argument} for a room not known locally
     */
    public History loadOlder(String roomId, int limit) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        if (limit < 0) {
            throw new IllegalArgumentException("limit < 0");
        }
        return History.fromRows(call(h -> Native.loadOlder(h, roomId, limit)));
    }

    // --- read state and disappearing messages ---------------------------------------------

    /**
     * Marks the room read up to {@code eventId} — typically the latest message shown when the
     * member opens the room or scrolls to its end. Our read position moves here at once (never
     * backwards: marking an older event leaves it where it is), so {@link #unread} counts from
     * there; the server is told through the room's queue, in order after its messages and
     * retried while offline: the {@code m.fully_read} marker, and the receipt the managed
     * configuration allows ({@link #readReceipts()}: public, private — only our own devices
     * see it, the default — or none). Our other devices follow through their sync.
     *
     * @throws TchapSecureException {@code unknown_event} ({@code eventId} is not a stored
     *     event of the room, or is a local echo's id not sent yet)
     */
    public void markRead(String roomId, String eventId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        call(h -> {
            Native.markRead(h, roomId, eventId);
            return null;
        });
    }

    /**
     * The room's unread state, computed here on the decrypted messages after our read position
     * (no network): how many messages of the other members, how many notify per the push
     * rules, how many highlight. The homeserver cannot count mentions in encrypted messages:
     * show these counts, not its own.
     */
    public Unread unread(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        return Unread.fromRow(call(h -> Native.unread(h, roomId)));
    }

    /** The room's read position and {@code m.fully_read} marker (no network). */
    public ReadMarkers readMarkers(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        return ReadMarkers.fromRow(call(h -> Native.readMarkers(h, roomId)));
    }

    /** The read receipt {@link #markRead} sends, as the managed configuration sets it. */
    public ReadReceipts readReceipts() throws TchapSecureException {
        return ReadReceipts.fromWire(call(Native::readReceipts));
    }

    /**
     * The room's message lifetime as this device honours it (no network): the room's own, the
     * managed configuration's ceiling, and the effective one.
     */
    public Retention retention(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        return Retention.fromRow(call(h -> Native.retention(h, roomId)));
    }

    /**
     * Sets the room's message lifetime for every member — disappearing messages
     * ({@code m.room.retention}) — or removes it ({@code null}). Applied here at once (messages
     * already older are purged before this returns), on the other members' devices when their
     * sync brings it. The managed configuration's ceiling ({@link Retention#ceiling()}) still
     * applies on every device. Needs the room's power level for {@code m.room.retention} (by
     * default, a moderator's).
     *
     * @param lifetimeOrNull at least {@link Retention#MIN_LIFETIME} (counted in whole
     *     milliseconds), or null to remove the room's lifetime
     * @throws IllegalArgumentException for a negative lifetime
     * @throws TchapSecureException before anything is sent: {@code retention_not_allowed} (no
     *     power level for it), {@code retention_too_short} (under 30 s); then the homeserver's
     *     or the network's
     */
    public void setRetention(String roomId, Duration lifetimeOrNull) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        long lifetimeMs;
        if (lifetimeOrNull == null) {
            lifetimeMs = -1;
        } else if (lifetimeOrNull.isNegative()) {
            throw new IllegalArgumentException("negative lifetime");
        } else if (lifetimeOrNull.compareTo(Duration.ofMillis(Long.MAX_VALUE)) > 0) {
            lifetimeMs = Long.MAX_VALUE;
        } else {
            lifetimeMs = lifetimeOrNull.toMillis();
        }
        call(h -> {
            Native.setRetention(h, roomId, lifetimeMs);
            return null;
        });
    }

    /**
     * Purges every message whose lifetime is over — text, edits' text and attachment erased,
     * a tombstone left ({@link Message#EXPIRED}) — and returns how many. The library already
     * does it when the client opens and after every sync round (then reported by
     * {@link Listener#onExpired}); call it when the alarm set for {@link #nextExpiry()} goes
     * off while the sync is stopped, then reload the rooms on screen if it returned more than
     * 0. No network.
     */
    public int purgeExpired() throws TchapSecureException {
        return call(Native::purgeExpired);
    }

    /**
     * When the next message will outlive its room's lifetime, in milliseconds since the epoch
     * (it may already be past: {@link #purgeExpired()} at once), or null if none will (no room
     * with a lifetime has a message left). While the sync is stopped (the app in the
     * background without the persistent mode), the app schedules an alarm at that time
     * ({@code AlarmManager}, an inexact one is enough) and calls {@link #purgeExpired()} when it
     * goes off — so that a message does not outstay its lifetime on the device just because
     * nothing ran — then asks again for the next one. Ask again after each sync too: a new
     * message or a new lifetime may bring it forward. No network.
     */
    public Long nextExpiry() throws TchapSecureException {
        String ms = call(Native::nextExpiry);
        if (ms == null) {
            return null;
        }
        try {
            return Long.valueOf(ms);
        } catch (NumberFormatException e) {
            throw new IllegalStateException("native nextExpiry is not a long: " + ms
                    + " (Java classes and libtchap_secure.so out of step?)", e);
        }
    }

    // --- attachments -----------------------------------------------------------------------

    /**
     * Sends a file end-to-end encrypted: it is encrypted inside the library while it is
     * uploaded, streamed from the descriptor (never held in the JVM), then announced in an
     * {@code m.file} ({@code m.image} for an {@code image/*} type) of the encrypted room.
     *
     * <p><b>Ownership of {@code fd} passes to the library with this call</b>, whatever happens
     * (also when this method throws before reaching the library): do not use or close it
     * afterwards. On Android: {@code ParcelFileDescriptor.detachFd()} of a descriptor opened
     * for reading ({@code ContentResolver.openFileDescriptor(uri, "r")}).
     *
     * @param fd an open descriptor readable from its current offset
     * @param length the exact number of bytes {@code fd} yields, or -1 for the rest of a
     *     regular file (a pipe needs the length, e.g. {@code OpenableColumns.SIZE})
     * @param name the name shown to the recipients (sanitised by the library)
     * @param mimetype e.g. {@code application/pdf}, or null ({@code application/octet-stream})
     * @return the event id
     * @throws TchapSecureException e.g. {@code attachment_too_large} (over
     *     {@code max_attachment_bytes} or the server's limit: nothing uploaded),
     *     {@code attachment_io} (the descriptor yielded fewer or more bytes than announced),
     *     {@code invalid_argument} (not an open readable descriptor), {@code unencrypted_room}
     */
    public String sendFile(String roomId, int fd, long length, String name, String mimetype)
            throws TchapSecureException {
        boolean[] handedOver = {false};
        try {
            Objects.requireNonNull(roomId, "roomId");
            Objects.requireNonNull(name, "name");
            if (length < -1) {
                throw new IllegalArgumentException("length < -1");
            }
            return call(h -> {
                handedOver[0] = true;
                return Native.sendFileFd(h, roomId, fd, length, name, mimetype);
            });
        } finally {
            if (!handedOver[0]) {
                closeHandedFd(fd);
            }
        }
    }

    /**
     * {@link #sendFile(String, int, long, String, String)} for a file the library opens from
     * its path (hosts, tests).
     *
     * @param name the name shown to the recipients, or null for the file's own name
     */
    public String sendFile(String roomId, File file, String name, String mimetype)
            throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        String path = Objects.requireNonNull(file, "file").getAbsolutePath();
        return call(h -> Native.sendFilePath(h, roomId, path, name, mimetype));
    }

    /**
     * Downloads the file of message {@code eventId} ({@link Message#attachment()}) through the
     * content scanner (the State's antivirus; there is no direct download), verifies it against
     * its SHA-256 and decrypts it into {@code fd}, streamed (never held in the JVM).
     *
     * <p>Nothing is written unless the scanner found the file clean and the whole ciphertext
     * matched its hash; a regular file that is not empty is refused ({@code file_exists}: a
     * download never overwrites). If writing to {@code fd} itself fails midway, discard what
     * it received. <b>Ownership of {@code fd} passes to the library</b>, as for
     * {@link #sendFile(String, int, long, String, String)}; open it for writing
     * ({@code openFileDescriptor(uri, "w")}).
     *
     * @return the file's length in bytes
     * @throws TchapSecureException e.g. {@code infected_file} (refused by the scanner, a
     *     security event is recorded), {@code attachment_hash_mismatch} (altered on the
     *     server), {@code scanner_unavailable}, {@code scanner_key_unpinned} (the scanner
     *     served a key the configuration's {@code content_scanner_keys} does not list: nothing
     *     was sent to it, a security event is recorded), {@code scanner_keys_not_configured},
     *     {@code attachment_too_large},
     *     {@code invalid_argument} (no decrypted attachment for that event; not an open
     *     writable descriptor)
     */
    public long downloadFile(String roomId, String eventId, int fd) throws TchapSecureException {
        boolean[] handedOver = {false};
        try {
            Objects.requireNonNull(roomId, "roomId");
            Objects.requireNonNull(eventId, "eventId");
            return call(h -> {
                handedOver[0] = true;
                return Native.downloadFileFd(h, roomId, eventId, fd);
            });
        } finally {
            if (!handedOver[0]) {
                closeHandedFd(fd);
            }
        }
    }

    /**
     * {@link #downloadFile(String, String, int)} into a new file at {@code out} (hosts,
     * tests): written to a private temporary file next to it and moved into place only when
     * clean and intact, so a refused or altered file never appears at {@code out}.
     *
     * @throws TchapSecureException {@code file_exists} if {@code out} exists (never
     *     overwritten), or as {@link #downloadFile(String, String, int)}
     */
    public long downloadFile(String roomId, String eventId, File out) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        String path = Objects.requireNonNull(out, "out").getAbsolutePath();
        return call(h -> Native.downloadFilePath(h, roomId, eventId, path));
    }

    /** Closes a descriptor whose ownership was handed to a call that never reached the library. */
    private static void closeHandedFd(int fd) {
        try {
            Native.closeFd(fd);
        } catch (TchapSecureException ignored) {
            // Not an open descriptor (or 0..2): there is nothing of ours to close.
        }
    }

    /**
     * A user's devices after a fresh key query (which also pins or checks the user's
     * cross-signing identity), each with its pinning state and its trust
     * ({@link Device#trust()}, {@link Device#isCrossSigned()}).
     */
    public List<Device> devices(String userId) throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        String[][] rows = call(h -> Native.devices(h, userId));
        List<Device> devices = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            devices.add(Device.fromRow(row));
        }
        return Collections.unmodifiableList(devices);
    }

    // --- cross-signing ---------------------------------------------------------------------

    /**
     * Where our own cross-signing identity stands, from the local store (no network). Login
     * creates the account's identity when it has none, publishes it and signs this device with
     * it.
     *
     * @throws TchapSecureException e.g. {@code no_session} when logged out
     */
    public CrossSigningStatus crossSigningStatus() throws TchapSecureException {
        return CrossSigningStatus.fromRow(call(Native::crossSigningStatus));
    }

    /**
     * Sets up our cross-signing identity: creates, publishes and signs this device with a new
     * one if the account has none, or finishes what an interrupted login, bootstrap or reset
     * left half done. Idempotent: with an identity already set up it changes nothing and
     * returns the same {@link CrossSigningStatus#master()}. If another device of ours created
     * the account's identity, nothing is created: this device stays unsigned until that
     * device verifies it. Login does this already; call it after a login whose bootstrap
     * failed, or when {@link TchapSecureException#PASSWORD_REQUIRED} asked for the password.
     *
     * @param passwordOrNull the account password (UTF-8), needed only if the homeserver asks
     *     for it (it does not for a first identity); zeroed before this method returns or
     *     throws
     * @return the status afterwards
     * @throws TchapSecureException {@link TchapSecureException#PASSWORD_REQUIRED} (the server
     *     asks for the password and none was given), {@code forbidden} (wrong password),
     *     {@link TchapSecureException#AUTH_UNSUPPORTED}
     */
    public CrossSigningStatus bootstrapCrossSigning(byte[] passwordOrNull)
            throws TchapSecureException {
        try {
            return CrossSigningStatus.fromRow(
                    call(h -> Native.bootstrapCrossSigning(h, passwordOrNull)));
        } finally {
            if (passwordOrNull != null) {
                Arrays.fill(passwordOrNull, (byte) 0);
            }
        }
    }

    /**
     * Replaces our cross-signing identity with a new one, published and signing this device;
     * every device and user verified before must be verified again, and other users see our
     * identity {@linkplain Identity#CHANGED changed}. The homeserver always requires the
     * account password for this. The keys in use are kept until the server has taken the new
     * ones: a refused reset changes nothing.
     *
     * @param password the account password (UTF-8); zeroed before this method returns or
     *     throws
     * @return the status afterwards, with the new {@link CrossSigningStatus#master()}
     * @throws TchapSecureException {@code forbidden} (wrong password: the identity in use is
     *     unchanged), {@link TchapSecureException#AUTH_UNSUPPORTED}
     */
    public CrossSigningStatus resetCrossSigning(byte[] password) throws TchapSecureException {
        try {
            Objects.requireNonNull(password, "password");
            return CrossSigningStatus.fromRow(call(h -> Native.resetCrossSigning(h, password)));
        } finally {
            if (password != null) {
                Arrays.fill(password, (byte) 0);
            }
        }
    }

    /**
     * {@code userId}'s cross-signing identity as pinned here (no network; {@link #devices}
     * fetches and pins it), or null if none is known. Our own user id gives our identity.
     */
    public Identity identity(String userId) throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        return Identity.fromRow(call(h -> Native.identity(h, userId)));
    }

    /**
     * Accepts {@code userId}'s changed cross-signing identity ({@link Identity#CHANGED})
     * without verifying them again, where the managed configuration allows it
     * ({@code allow_identity_acknowledgement}): the new master key, as the member was shown it
     * ({@link Identity#changedMaster()}), is pinned (not verified) and journaled, and the
     * devices it signed receive room keys from the next message on.
     *
     * @param master the new master key shown to the member
     * @return the identity as pinned now
     * @throws TchapSecureException {@code identity_acknowledgement_not_allowed} (the
     *     configuration requires a new verification), {@code identity_not_changed},
     *     {@code identity_changed_again} (the server shows yet another key: show it again)
     */
    public Identity acknowledgeIdentityChange(String userId, String master)
            throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        Objects.requireNonNull(master, "master");
        return Identity.fromRow(call(h -> Native.acknowledgeIdentityChange(h, userId, master)));
    }

    // --- push ------------------------------------------------------------------------------

    /**
     * Registers (or updates) this device's pusher: the homeserver will notify the managed
     * configuration's push gateway ({@code push_gateway_url}) of each event its push rules say
     * notifies, with the event and room ids only ({@code event_id_only}). Removed by
     * {@link #logout()} and, if the homeserver answers within 10 s, by {@link #wipe()}.
     *
     * @param appId the app's id (1 to 64 bytes)
     * @param pushkey this device's address at the push distributor (1 to 512 bytes), e.g. a
     *     UnifiedPush endpoint of the State-run distributor
     * @param deviceName the name shown in the account's list of pushers
     * @throws TchapSecureException {@code invalid_argument} when no push gateway is configured
     *     or an id is out of bounds or contains control characters
     */
    public void registerPusher(String appId, String pushkey, String deviceName)
            throws TchapSecureException {
        Objects.requireNonNull(appId, "appId");
        Objects.requireNonNull(pushkey, "pushkey");
        Objects.requireNonNull(deviceName, "deviceName");
        call(h -> {
            Native.registerPusher(h, appId, pushkey, deviceName);
            return null;
        });
    }

    /** Removes every pusher this device registered; returns how many were removed. */
    public int unregisterPushers() throws TchapSecureException {
        return call(Native::unregisterPushers);
    }

    /** The pushers the homeserver holds for the account (every device's). */
    public List<Pusher> pushers() throws TchapSecureException {
        String[][] rows = call(Native::pushers);
        List<Pusher> out = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            out.add(Pusher.fromRow(row));
        }
        return Collections.unmodifiableList(out);
    }

    /**
     * The notification for an event a push announced. Call it from the push handler with the
     * room and event ids the push carried (pushers are {@code event_id_only}: nothing readable
     * travels through the push path). The event is fetched over the pinned transport and
     * decrypted with this device's stored keys, inside the library; if its room key has not
     * arrived yet, the library fetches to-device messages only (at a position of its own, so
     * the sync misses nothing) for up to {@code wait}, then answers or throws
     * {@link Notification#CANNOT_DECRYPT_YET} — never a partial or guessed notification.
     *
     * <p>Safe while the sync thread runs ({@link #startSync}), and while another process syncs
     * the same data directory: the event is not stored here (the sync stores it in its place
     * in the timeline), and a to-device message fetched by both paths is applied once. The call
     * holds this client for up to {@code wait}: other calls on it, and the sync thread's next
     * round, wait for it meanwhile. It blocks on the network: never call it on the Android
     * main thread.
     *
     * @param roomId the push's {@code room_id}
     * @param eventId the push's {@code event_id}
     * @param wait how long to wait for a missing room key, at most {@link Notification#MAX_WAIT}
     *     (counted in whole milliseconds)
     * @throws TchapSecureException {@link Notification#CANNOT_DECRYPT_YET} (the room key did
     *     not arrive within {@code wait}: ask again later, or let the sync show the message),
     *     {@link Notification#REFUSED} (a message in clear, a redacted event, or the server
     *     answered with another event than the one asked: journaled), {@code invalid_argument}
     *     (a malformed room or event id, a negative wait or one over
     *     {@link Notification#MAX_WAIT}), a crypto error for an event that will never decrypt
     *     (a replay, a sender that does not own the session), or the homeserver's or the
     *     network's ({@code matrix_error} for an event the homeserver does not show us)
     */
    public Notification notification(String roomId, String eventId, Duration wait)
            throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(eventId, "eventId");
        Objects.requireNonNull(wait, "wait");
        // A wait out of range is refused by the library (invalid_argument): a negative one
        // crosses as -1, one beyond an int of milliseconds as Integer.MAX_VALUE.
        int waitMs;
        if (wait.isNegative()) {
            waitMs = -1;
        } else if (wait.compareTo(Duration.ofMillis(Integer.MAX_VALUE)) > 0) {
            waitMs = Integer.MAX_VALUE;
        } else {
            waitMs = (int) wait.toMillis();
        }
        return Notification.fromRow(call(h -> Native.notification(h, roomId, eventId, waitMs)));
    }

    /**
     * {@link #notification(String, String, Duration)} waiting up to
     * {@link Notification#DEFAULT_WAIT} (5 s) for a missing room key: enough for a key sent
     * with the message, within the ten seconds or so an Android push handler has.
     */
    public Notification notification(String roomId, String eventId)
            throws TchapSecureException {
        return notification(roomId, eventId, Notification.DEFAULT_WAIT);
    }

    // --- interactive verification ----------------------------------------------------------

    /**
     * Asks {@code userId} to verify interactively (SAS emoji, or QR codes; see
     * {@link Verification} for the whole flow). To verify another device of ours, pass our
     * own user id and no room: every other device of ours receives the request, the first to
     * accept takes it. To verify another user, pass a room with them (other clients expect an
     * in-room request) or null for to-device.
     *
     * @param roomIdOrNull the room to send the request in, or null for to-device
     * @return the flow id ({@link Verification#flowId()}), state {@link Verification#REQUESTED}
     */
    public String requestVerification(String userId, String roomIdOrNull)
            throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        return call(h -> Native.requestVerification(h, userId, roomIdOrNull));
    }

    /**
     * Asks one device of {@code userId} (ours or another user's) to verify, to-device: only
     * that device receives the request, and only its key can complete the flow.
     *
     * @return the flow id
     * @throws TchapSecureException {@code invalid_argument} if the device is not a known,
     *     live, unblocked device of the user
     */
    public String requestDeviceVerification(String userId, String deviceId)
            throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        Objects.requireNonNull(deviceId, "deviceId");
        return call(h -> Native.requestDeviceVerification(h, userId, deviceId));
    }

    /**
     * Accepts a request received ({@link Verification#RECEIVED}, from
     * {@link Listener#onVerification} or {@link #verifications()}): both sides become
     * {@link Verification#READY}.
     *
     * @throws TchapSecureException {@code invalid_argument} for an unknown flow id, a
     *     verification code ({@code invalid_state}, {@code timeout}, …) when the flow is not
     *     in a state that allows this; the same for the other verification methods
     */
    public Verification acceptVerification(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::acceptVerification);
    }

    /**
     * Starts SAS on a {@link Verification#READY} flow (either side may). After the other side's
     * answer arrives by sync, both sides show {@link Verification#emoji()}.
     */
    public Verification startSas(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::startSas);
    }

    /**
     * Our user saw the same emoji (or numbers) on both screens. The flow is
     * {@link Verification#DONE} once the other side confirmed too; only then is anything
     * signed and trusted.
     */
    public Verification confirmSas(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::confirmSas);
    }

    /**
     * Our user saw different emoji: the flow is cancelled
     * ({@link Verification#CANCEL_MISMATCHED_SAS}) on both sides, nothing is trusted, and a
     * security event is journaled (a man in the middle, or a fault).
     */
    public Verification sasMismatch(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::sasMismatch);
    }

    /** Cancels a flow, or declines a request received ({@link Verification#CANCEL_USER}). */
    public Verification cancelVerification(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::cancelVerification);
    }

    /**
     * The QR code to show on a {@link Verification#READY} flow, as the payload bytes to render
     * (the specification's binary QR payload; encode the bytes as they are). When the other side has scanned it, the flow becomes
     * {@link Verification#QR_SCANNED}: call {@link #confirmQrScanned} once our user saw the
     * other screen say so.
     */
    public byte[] showQr(String flowId) throws TchapSecureException {
        Objects.requireNonNull(flowId, "flowId");
        return call(h -> Native.showQr(h, flowId));
    }

    /**
     * The other side's QR code, as scanned (the raw payload bytes): checked against the keys
     * known here; the flow becomes {@link Verification#QR_RECIPROCATED}, then done when the
     * other side confirms.
     */
    public Verification scanQr(String flowId, byte[] payload) throws TchapSecureException {
        Objects.requireNonNull(flowId, "flowId");
        Objects.requireNonNull(payload, "payload");
        return Verification.fromRow(call(h -> Native.scanQr(h, flowId, payload)));
    }

    /** Our user confirms the other side scanned our code ({@link Verification#QR_SCANNED}). */
    public Verification confirmQrScanned(String flowId) throws TchapSecureException {
        return verificationCall(flowId, Native::confirmQrScanned);
    }

    /** A flow's current state (no network), or null if this client does not know it. */
    public Verification verification(String flowId) throws TchapSecureException {
        Objects.requireNonNull(flowId, "flowId");
        return Verification.fromRow(call(h -> Native.verification(h, flowId)));
    }

    /**
     * Every flow this client knows, requests received, in progress, done or cancelled (no
     * network; flows live in memory only and are lost when the client closes).
     */
    public List<Verification> verifications() throws TchapSecureException {
        String[][] rows = call(Native::verifications);
        List<Verification> flows = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            flows.add(Verification.fromRow(row));
        }
        return Collections.unmodifiableList(flows);
    }

    @FunctionalInterface
    private interface FlowCall {
        String[] apply(long handle, String flowId) throws TchapSecureException;
    }

    private Verification verificationCall(String flowId, FlowCall body)
            throws TchapSecureException {
        Objects.requireNonNull(flowId, "flowId");
        return Verification.fromRow(call(h -> body.apply(h, flowId)));
    }

    // --- background sync -------------------------------------------------------------------

    /**
     * Starts syncing on the library's dedicated thread in {@link SyncMode#INTERACTIVE} mode;
     * {@code listener} is called there. At most one sync thread per client.
     */
    public void startSync(Listener listener) throws TchapSecureException {
        startSync(listener, SyncMode.INTERACTIVE);
    }

    /**
     * Starts syncing on the library's dedicated thread in {@code mode}; {@code listener} is
     * called there. At most one sync thread per client ({@code sync_running} otherwise): to
     * change modes, {@link #stopSync()} first.
     */
    public void startSync(Listener listener, SyncMode mode) throws TchapSecureException {
        NativeListener guarded = new GuardedListener(this, Objects.requireNonNull(listener, "listener"));
        String wire = Objects.requireNonNull(mode, "mode").wire;
        call(h -> {
            Native.startSync(h, guarded, wire);
            return null;
        });
    }

    /**
     * Stops the sync thread and waits for it: no callback runs after this returns. Returns at
     * once in the middle of a long poll or a back-off (the request in flight is abandoned;
     * nothing of it was applied); a sync answer already received is applied first.
     */
    public void stopSync() throws TchapSecureException {
        rejectFromCallback("stopSync()");
        call(h -> {
            Native.stopSync(h);
            return null;
        });
    }

    /**
     * The network is back: call it from Android's {@code ConnectivityManager.NetworkCallback}
     * ({@code onAvailable}). A sync thread backing off after network failures retries at once,
     * and its back-off starts again from the shortest; one long-polling, or no sync thread,
     * is left alone. Returns at once; may be called from any thread, a {@link Listener}
     * callback included.
     */
    public void networkAvailable() throws TchapSecureException {
        call(h -> {
            Native.networkAvailable(h);
            return null;
        });
    }

    // --- Tchap identity ---------------------------------------------------------------------

    /** Why the account is locked: {@code "expired"}, {@code "revoked"}, or null (unlocked). */
    public String accountLock() throws TchapSecureException {
        return call(Native::accountLock);
    }

    /**
     * Asks the homeserver to e-mail the renewal link of an expired account (the client is
     * locked meanwhile: nothing is synced, sent or shown). Then {@link #resume()}.
     */
    public void requestRenewal() throws TchapSecureException {
        call(h -> {
            Native.requestRenewal(h);
            return null;
        });
    }

    /**
     * Asks the homeserver whether the expired account was renewed: {@code true} if the client
     * is unlocked (sync and send work again, nothing was lost), {@code false} if the account is
     * still expired or was revoked.
     */
    public boolean resume() throws TchapSecureException {
        return "true".equals(call(Native::resume));
    }

    /** The member's devices, the most recently seen first, this one marked current. */
    public List<OwnDevice> ownDevices() throws TchapSecureException {
        String[][] rows = call(Native::ownDevices);
        List<OwnDevice> out = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            out.add(OwnDevice.fromRow(row));
        }
        return Collections.unmodifiableList(out);
    }

    /**
     * Logs other devices of the member out (their sessions revoked on the server), authorised
     * by the account password.
     *
     * @param password UTF-8 bytes or null ({@code password_required} if the server asks);
     *     zeroed before this method returns or throws
     */
    public void logOutDevices(List<String> deviceIds, byte[] password)
            throws TchapSecureException {
        try {
            Objects.requireNonNull(deviceIds, "deviceIds");
            String[] ids = deviceIds.toArray(new String[0]);
            for (String id : ids) {
                Objects.requireNonNull(id, "deviceId");
            }
            call(h -> {
                Native.logOutDevices(h, ids, password);
                return null;
            });
        } finally {
            if (password != null) {
                Arrays.fill(password, (byte) 0);
            }
        }
    }

    /** Searches the user directory by a name or e-mail fragment (at most {@code limit}, 1–50). */
    public List<DirectoryUser> searchDirectory(String term, int limit)
            throws TchapSecureException {
        Objects.requireNonNull(term, "term");
        String[][] rows = call(h -> Native.searchDirectory(h, term, limit));
        List<DirectoryUser> out = new ArrayList<>(rows.length);
        for (int i = 1; i < rows.length; i++) {
            out.add(DirectoryUser.fromRow(rows[i]));
        }
        return Collections.unmodifiableList(out);
    }

    /**
     * The user a work e-mail address belongs to, by the identity server's hashed lookup (the
     * address itself never leaves the device), or null if none.
     */
    public String lookupEmail(String address) throws TchapSecureException {
        Objects.requireNonNull(address, "address");
        return call(h -> Native.lookupEmail(h, address));
    }

    /**
     * Invites the user a work e-mail address belongs to; an unknown address fails with
     * {@code unknown_address} and nothing is sent. Returns the user invited.
     */
    public String inviteByEmail(String roomId, String address) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        Objects.requireNonNull(address, "address");
        return call(h -> Native.inviteByEmail(h, roomId, address));
    }

    /**
     * The direct chat with {@code userId}: the existing one ({@code m.direct}), or a new
     * encrypted room. Element 0 is the room id, element 1 {@code "true"} if it was created now.
     */
    public String[] openDirectRoom(String userId) throws TchapSecureException {
        Objects.requireNonNull(userId, "userId");
        return call(h -> Native.openDirectRoom(h, userId));
    }

    /** A room's members, by user id, with their names parsed and checked. */
    public List<Member> members(String roomId) throws TchapSecureException {
        Objects.requireNonNull(roomId, "roomId");
        String[][] rows = call(h -> Native.members(h, roomId));
        List<Member> out = new ArrayList<>(rows.length);
        for (String[] row : rows) {
            out.add(Member.fromRow(row));
        }
        return Collections.unmodifiableList(out);
    }

    // --- wipe ------------------------------------------------------------------------------

    /**
     * Crypto-shreds the data directory: the hardware key is destroyed, the vault and the
     * database deleted. Afterwards only {@link #close()} may be called.
     */
    public void wipe() throws TchapSecureException {
        rejectFromCallback("wipe()");
        call(h -> {
            Native.wipe(h);
            wiped = true;
            return null;
        });
    }

    // --- handle guard ----------------------------------------------------------------------

    @FunctionalInterface
    private interface NativeCall<T> {
        T apply(long handle) throws TchapSecureException;
    }

    /**
     * Runs {@code body} with the live handle, holding the read lock so {@link #close()} cannot
     * free the handle meanwhile.
     */
    private <T> T call(NativeCall<T> body) throws TchapSecureException {
        if (closing) {
            throw new IllegalStateException("SecureClient is closed");
        }
        Lock read = lock.readLock();
        // tryLock(), not lock(): it fails only while close() holds the write lock — when this
        // call must fail anyway — and, unlike lock(), it does not queue behind a close() that
        // waits for the write lock. Queuing would deadlock when a Listener callback calls in
        // while one thread waits in stopSync() (holding the read lock, waiting for the sync
        // thread) and another in close() (waiting for that read lock).
        if (!read.tryLock()) {
            throw new IllegalStateException("SecureClient is closed");
        }
        try {
            long h = handle;
            if (h == 0 || closing) {
                throw new IllegalStateException("SecureClient is closed");
            }
            if (wiped) {
                throw new IllegalStateException("SecureClient was wiped: only close() remains");
            }
            return body.apply(h);
        } finally {
            read.unlock();
        }
    }

    private void rejectFromCallback(String what) {
        if (IN_CALLBACK.get() == this) {
            throw new IllegalStateException(what + " from a Listener callback would wait for"
                    + " the sync thread, which is running that callback");
        }
    }

    /**
     * Marks the sync thread as running a callback of {@code owner} (see
     * {@link #rejectFromCallback}) and keeps
     * listener exceptions out of the library.
     */
    private static final class GuardedListener implements NativeListener {
        private final SecureClient owner;
        private final Listener delegate;

        GuardedListener(SecureClient owner, Listener delegate) {
            this.owner = owner;
            this.delegate = delegate;
        }

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onMessage(roomId, eventId, sender, senderDisplayName, body, trust);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onEditedRow(String roomId, String[] row) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onEdited(roomId, Message.fromRow(row));
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onEdited(String roomId, Message message) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onEdited(roomId, message);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onRedacted(String roomId, String eventId, String redactedBy) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onRedacted(roomId, eventId, redactedBy);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onExpired(int count) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onExpired(count);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onNotificationRow(String[] row) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onNotification(Notification.fromRow(row));
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onNotification(Notification notification) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onNotification(notification);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onVerificationRow(String[] row) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onVerification(Verification.fromRow(row));
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onVerification(Verification verification) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onVerification(verification);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onSendState(String roomId, String localId, String state, String eventId,
                String error) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onSendState(roomId, localId, state, eventId, error);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onSecurityEvent(kind, roomId, userId, detail);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        @Override
        public void onSyncState(String state, String errorCode) {
            IN_CALLBACK.set(owner);
            try {
                delegate.onSyncState(state, errorCode);
            } catch (RuntimeException e) {
                uncaught(e);
            } finally {
                IN_CALLBACK.remove();
            }
        }

        private static void uncaught(RuntimeException e) {
            Thread thread = Thread.currentThread();
            Thread.UncaughtExceptionHandler handler = thread.getUncaughtExceptionHandler();
            if (handler != null) {
                handler.uncaughtException(thread, e);
            }
        }
    }
}
