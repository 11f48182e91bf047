package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.time.Duration;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Unread counts, read receipts and disappearing messages through the Java API (issue 18 items
 * 3-4) on the real library and Synapse. Quinn sends, rose reads: rose's counts are computed on
 * her device and follow her read position, which only moves forward and reaches her other
 * device through the server (a private receipt, the default). Quinn, the room's creator, sets
 * a 30 s lifetime that rose (no power level) may not; once it is over, rose's
 * {@link SecureClient#purgeExpired()} erases the message (a tombstone without text is left)
 * and quinn's running sync does it on its own and says so ({@link Listener#onExpired}). One
 * sleep of 31 s in all. Users: quinn (index 16) and rose (index 17), used by no other test
 * class.
 */
public class ReceiptsRetentionTest {
    private static final long TIMEOUT_SECONDS = 60;
    /** Synapse runs on this host: its timestamps and ours share a clock, give or take this. */
    private static final long CLOCK_SLACK_MS = 2_000;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static SecureClient open(TestEnv.User user, String name, byte[] config,
            boolean holdIdentity) throws Exception {
        SecureClient c = SecureClient.open(config, TestEnv.newDataDir(name),
                TestEnv.mainBinder());
        try {
            c.login(user.localpart, user.password(), "jvm-" + name);
            if (holdIdentity) {
                TestEnv.holdIdentity(c, user);
            }
        } catch (Exception | Error e) {
            c.close();
            throw e;
        }
        return c;
    }

    private static SecureClient login(TestEnv.User user, String name, byte[] config)
            throws Exception {
        return open(user, name, config, true);
    }

    private static void assertCode(String code, Call call) throws Exception {
        try {
            call.run();
            fail("expected TchapSecureException " + code);
        } catch (TchapSecureException e) {
            assertEquals(e.getMessage(), code, e.getCode());
        }
    }

    private interface Call {
        void run() throws Exception;
    }

    /**
     * An encrypted room created by {@code a} with {@code b} joined, both stores knowing it, and
     * {@code b}'s one-time keys uploaded (so that {@code a}'s room key can reach him).
     */
    private static String room(SecureClient a, SecureClient b) throws Exception {
        String roomId = a.createRoom(null, b.session().userId());
        b.join(roomId);
        TestEnv.await("the creator sees the other member joined", TIMEOUT_SECONDS, () -> {
            a.syncOnce(0);
            for (Room r : a.rooms()) {
                if (r.roomId().equals(roomId) && r.joinedMembers() == 2) {
                    return true;
                }
            }
            return false;
        });
        b.syncOnce(0);
        return roomId;
    }

    /** The message {@code eventId} as {@code c}'s timeline lists it, or null. */
    private static Message find(SecureClient c, String roomId, String eventId)
            throws TchapSecureException {
        for (Message m : c.messages(roomId, 100)) {
            if (m.eventId().equals(eventId)) {
                return m;
            }
        }
        return null;
    }

    /** Syncs {@code c} until its timeline shows every one of {@code eventIds} decrypted. */
    private static void receive(SecureClient c, String roomId, String... eventIds)
            throws Exception {
        TestEnv.await("messages " + List.of(eventIds), TIMEOUT_SECONDS, () -> {
            c.syncOnce(0);
            for (String eventId : eventIds) {
                Message m = find(c, roomId, eventId);
                if (m == null || !m.isDecrypted()) {
                    return false;
                }
            }
            return true;
        });
    }

    /** How many messages of {@code c}'s timeline show {@code body}. */
    private static int showing(SecureClient c, String roomId, String body)
            throws TchapSecureException {
        int n = 0;
        for (Message m : c.messages(roomId, 100)) {
            if (body.equals(m.body())) {
                n++;
            }
        }
        return n;
    }

    @Test
    public void unreadCountsFollowTheReadPositionWhichReachesOurOtherDevice() throws Exception {
        TestEnv.User quinn = TestEnv.users().get(16);
        TestEnv.User rose = TestEnv.users().get(17);
        try (SecureClient a = login(quinn, "rr-quinn", TestEnv.config());
                SecureClient b = login(rose, "rr-rose", TestEnv.config());
                // Rose's second device: it only follows her read position (no room keys
                // needed, so its identity is left alone).
                SecureClient tablet = open(rose, "rr-rose-tablet", TestEnv.config(), false)) {
            String roseId = b.session().userId();
            String roomId = room(a, b);
            tablet.syncOnce(0);
            assertEquals("the default configuration", ReadReceipts.PRIVATE, b.readReceipts());
            assertEquals("private", b.readReceipts().configValue());
            assertEquals(new ReadMarkers(null, null), b.readMarkers(roomId));
            assertTrue(b.unread(roomId).isEmpty());

            long n = System.nanoTime();
            String first = a.send(roomId, "Point un " + n);
            String second = a.send(roomId, "Point deux " + n);
            // The third names rose in its encrypted m.mentions: it highlights.
            String third = a.send(roomId, "Point trois " + n, List.of(roseId));
            receive(b, roomId, first, second, third);

            // Counted on rose's device: three messages of quinn's, all notify (two members),
            // the mention highlights. Our own messages never count.
            Unread unread = b.unread(roomId);
            assertEquals(unread.toString(), new Unread(3, 3, 1), unread);
            assertEquals(3, unread.messages());
            assertEquals(3, unread.notifying());
            assertEquals(1, unread.highlight());
            assertFalse(unread.isEmpty());
            assertTrue("the sender has nothing unread", a.unread(roomId).isEmpty());

            b.markRead(roomId, second);
            assertEquals(new Unread(1, 1, 1), b.unread(roomId));
            assertEquals(new ReadMarkers(second, second), b.readMarkers(roomId));
            // Never backwards.
            b.markRead(roomId, first);
            assertEquals(second, b.readMarkers(roomId).readEventId());
            assertEquals(1, b.unread(roomId).messages());
            // Only a stored event of the room.
            String server = TestEnv.prop("tchap.serverName");
            String unknown = "$inconnu" + System.nanoTime() + ":" + server;
            assertCode("unknown_event", () -> b.markRead(roomId, unknown));
            assertEquals(second, b.readMarkers(roomId).readEventId());

            b.markRead(roomId, third);
            assertTrue(b.unread(roomId).toString(), b.unread(roomId).isEmpty());
            assertEquals(new ReadMarkers(third, third), b.readMarkers(roomId));

            // The private receipt went out through the queue: rose's other device follows.
            String followed = TestEnv.await("the read position on rose's tablet",
                    TIMEOUT_SECONDS, () -> {
                        tablet.syncOnce(0);
                        String read = tablet.readMarkers(roomId).readEventId();
                        return third.equals(read) ? read : null;
                    });
            assertEquals(third, followed);
        }
    }

    /** Records onExpired, and what must not happen. */
    private static final class ExpiryListener implements Listener {
        final AtomicInteger expired = new AtomicInteger();
        final AtomicInteger calls = new AtomicInteger();
        final Queue<String> problems = new ConcurrentLinkedQueue<>();

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {}

        @Override
        public void onExpired(int count) {
            if (count <= 0) {
                problems.add("onExpired(" + count + ")");
            }
            calls.incrementAndGet();
            expired.addAndGet(count);
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {}

        @Override
        public void onSyncState(String state, String errorCode) {
            if ("failed".equals(state)) {
                problems.add("sync failed: " + errorCode);
            }
        }
    }

    @Test
    public void aMessageDisappearsOnceItsRoomsLifetimeIsOver() throws Exception {
        TestEnv.User quinn = TestEnv.users().get(16);
        TestEnv.User rose = TestEnv.users().get(17);
        // Rose's device has a managed ceiling of one day on every room.
        byte[] ceiling = TestEnv.configWith("\"max_message_lifetime_days\": 1");
        try (SecureClient a = login(quinn, "ret-quinn", TestEnv.config());
                SecureClient b = login(rose, "ret-rose", ceiling)) {
            String roomId = room(a, b);
            assertEquals(new Retention(null, null, null), a.retention(roomId));
            assertNull("no room with a lifetime", a.nextExpiry());
            assertEquals(new Retention(null, Duration.ofDays(1), Duration.ofDays(1)),
                    b.retention(roomId));

            // Rose (no power level) may not set it; quinn (the creator) may, 30 s at least.
            assertCode("retention_not_allowed",
                    () -> b.setRetention(roomId, Duration.ofMinutes(1)));
            assertCode("retention_too_short",
                    () -> a.setRetention(roomId, Duration.ofMillis(29_999)));
            assertCode("retention_too_short", () -> a.setRetention(roomId, Duration.ZERO));
            try {
                a.setRetention(roomId, Duration.ofSeconds(-30));
                fail("a negative lifetime");
            } catch (IllegalArgumentException expected) {
                // null is the way to remove it
            }
            assertNull(a.retention(roomId).room());
            a.setRetention(roomId, Retention.MIN_LIFETIME);
            Duration thirty = Duration.ofSeconds(30);
            assertEquals(new Retention(thirty, null, thirty), a.retention(roomId));
            Retention honoured = TestEnv.await("the lifetime on rose's device", TIMEOUT_SECONDS,
                    () -> {
                        b.syncOnce(0);
                        Retention r = b.retention(roomId);
                        return thirty.equals(r.room()) ? r : null;
                    });
            assertEquals("the smaller of the room's and the ceiling",
                    new Retention(thirty, Duration.ofDays(1), thirty), honoured);

            String text = "Message éphémère " + System.nanoTime();
            long beforeSend = System.currentTimeMillis();
            String eventId = a.send(roomId, text);
            long afterSend = System.currentTimeMillis();
            long sentNanos = System.nanoTime();
            receive(b, roomId, eventId);
            Message kept = find(b, roomId, eventId);
            assertEquals(text, kept.body());
            assertFalse(kept.isExpired());

            // The deadline: the server's timestamp plus 30 s, for the app's alarm.
            Long deadline = b.nextExpiry();
            assertNotNull("rose's next expiry", deadline);
            assertTrue(deadline + " vs sent " + beforeSend + ".." + afterSend,
                    deadline >= beforeSend + 30_000 - CLOCK_SLACK_MS
                            && deadline <= afterSend + 30_000 + CLOCK_SLACK_MS);
            assertEquals("nothing is over yet", 0, b.purgeExpired());
            assertEquals(text, find(b, roomId, eventId).body());

            // Quinn's sync keeps running: it purges on its own and says so. Rose's does not
            // run (the app in the background): she purges when her alarm would go off.
            ExpiryListener listener = new ExpiryListener();
            a.startSync(listener);
            long wake = sentNanos + TimeUnit.SECONDS.toNanos(31);
            long left = wake - System.nanoTime();
            assertTrue("the deadline is still ahead", left > 0);
            TimeUnit.NANOSECONDS.sleep(left);
            assertTrue("past the deadline", System.currentTimeMillis() >= deadline);

            int purged = b.purgeExpired();
            assertTrue("purged " + purged, purged >= 1);
            Message gone = find(b, roomId, eventId);
            assertNotNull("a tombstone stays", gone);
            assertEquals(Message.EXPIRED, gone.state());
            assertTrue(gone.toString(), gone.isExpired());
            assertFalse(gone.isDecrypted());
            assertNull(gone.body());
            assertNull(gone.attachment());
            assertEquals(0, showing(b, roomId, text));
            assertEquals("nothing left to purge", 0, b.purgeExpired());
            // Nothing of this room is left to expire; rose's device may still hold messages of
            // her other rooms (from the other test, undecryptable here), which her one-day
            // ceiling keeps for a day.
            Long next = b.nextExpiry();
            assertTrue("next expiry " + next, next == null
                    || next > System.currentTimeMillis() + Duration.ofHours(23).toMillis());
            // A sync never brings it back.
            b.syncOnce(0);
            assertTrue(find(b, roomId, eventId).isExpired());

            int reported = TestEnv.await("quinn's onExpired", TIMEOUT_SECONDS,
                    () -> listener.expired.get() > 0 ? listener.expired.get() : null);
            assertTrue("reported " + reported, reported >= 1);
            Message quinnsOwn = find(a, roomId, eventId);
            assertTrue(quinnsOwn.toString(), quinnsOwn.isExpired());
            assertNull(quinnsOwn.body());
            a.stopSync();
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());

            // The lifetime removed: messages are kept again (the ceiling still applies on
            // rose's device).
            a.setRetention(roomId, null);
            assertEquals(new Retention(null, null, null), a.retention(roomId));
            TestEnv.await("the lifetime removed on rose's device", TIMEOUT_SECONDS, () -> {
                b.syncOnce(0);
                return b.retention(roomId).room() == null;
            });
            assertEquals(new Retention(null, Duration.ofDays(1), Duration.ofDays(1)),
                    b.retention(roomId));
        }
    }
}
