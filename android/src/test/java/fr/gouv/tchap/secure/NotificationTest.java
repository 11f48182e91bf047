package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.Map;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The notification path through the Java API (issue 17 item 2) on the real library and
 * Synapse: kate sends in an encrypted room, leo — who does not sync after the send — asks for
 * the notification of each event by the ids a push would carry, and gets it decrypted (a text
 * with its body, a file without; the room key fetched by the notification path itself); the
 * typed refusals reach Java with their codes; with leo's sync thread running instead, the
 * listener's {@link Listener#onNotification} gets kate's message (issue 17 item 3). Users: kate
 * (index 10) and leo (index 11), used by no other test class.
 */
public class NotificationTest {
    private static final long TIMEOUT_SECONDS = 60;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static SecureClient login(TestEnv.User user, String name) throws Exception {
        SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir(name),
                TestEnv.mainBinder());
        try {
            c.login(user.localpart, user.password(), "jvm-" + name);
            TestEnv.holdIdentity(c, user);
        } catch (Exception | Error e) {
            c.close();
            throw e;
        }
        return c;
    }

    private static void assertCode(String code, Call call) throws Exception {
        try {
            call.run();
            fail("expected TchapSecureException " + code);
        } catch (TchapSecureException e) {
            assertEquals(e.getMessage(), code, e.getCode());
        }
    }

    /** Kate's store knows leo joined: her room key goes to his device with the message. */
    private static void awaitJoined(SecureClient a, String roomId) throws Exception {
        TestEnv.await("kate sees leo joined", TIMEOUT_SECONDS, () -> {
            a.syncOnce(0);
            for (Room r : a.rooms()) {
                if (r.roomId().equals(roomId) && r.joinedMembers() == 2) {
                    return true;
                }
            }
            return false;
        });
    }

    private interface Call {
        void run() throws Exception;
    }

    @Test
    public void aPushedEventIsDecryptedWithoutASyncAfterItAndRefusalsAreTyped() throws Exception {
        TestEnv.User kate = TestEnv.users().get(10);
        TestEnv.User leo = TestEnv.users().get(11);
        SecureClient closed;
        try (SecureClient a = login(kate, "notif-kate");
                SecureClient b = login(leo, "notif-leo")) {
            closed = b;
            String kateId = a.session().userId();
            String roomId = a.createRoom("Notifications JVM", b.session().userId());
            b.join(roomId);
            // Kate's store knows leo joined: her room key goes to his device with the message.
            awaitJoined(a, roomId);
            // Leo's phone synced once before going to the background (its first sync uploads
            // its one-time keys, without which no room key can reach it).
            b.syncOnce(0);

            String text = "Réunion restreinte à 15 h, salle 204 " + System.nanoTime();
            String eventId = a.send(roomId, text);

            // No wait: the room key is still in leo's to-device inbox, not in his store.
            assertCode(Notification.CANNOT_DECRYPT_YET,
                    () -> b.notification(roomId, eventId, Duration.ZERO));
            // The default wait: the key is fetched (to-device only), the event decrypted.
            Notification n = b.notification(roomId, eventId);
            assertEquals(Notification.Kind.MESSAGE, n.kind());
            assertEquals(text, n.body());
            assertEquals(kateId, n.sender());
            // Her display name (Synapse's default: the localpart) parsed: no organisation,
            // nothing suspicious.
            assertEquals(kate.localpart, n.senderName());
            assertEquals(null, n.senderOrganisation());
            assertEquals(java.util.Collections.singletonList(DisplayName.NO_ORGANISATION),
                    n.senderDisplayName().issues());
            assertFalse(n.senderDisplayName().isSuspicious());
            assertEquals(roomId, n.roomId());
            assertEquals(eventId, n.eventId());
            assertEquals("m.room.message", n.eventType());
            assertEquals("Notifications JVM", n.roomName());
            assertNotNull("trust in the sending device", n.trust());
            assertEquals(a.session().deviceId(), n.senderDevice());
            assertTrue("origin_server_ts " + n.originServerTs(), n.originServerTs() > 0);
            // The spec's default rules notify a message in a two-member room.
            assertTrue("a direct message notifies: " + n, n.notifies());
            assertFalse("the body stays out of toString", n.toString().contains(text));
            // Not stored by the notification path: the sync stores it in its place.
            for (Message m : b.messages(roomId, 50)) {
                assertFalse("stored by the notification path: " + m,
                        eventId.equals(m.eventId()));
            }

            File file = Files.createTempFile(new File(TestEnv.prop("tchap.dataRoot")).toPath(),
                    "notif-", ".pdf").toFile();
            Files.write(file.toPath(), "%PDF-1.4 confidentiel".getBytes(StandardCharsets.UTF_8));
            String fileEvent = a.sendFile(roomId, file, "note confidentielle.pdf",
                    "application/pdf");
            Notification f = b.notification(roomId, fileEvent, Duration.ofSeconds(10));
            assertEquals(Notification.Kind.FILE, f.kind());
            assertNull("a file is shown without its name", f.body());
            assertEquals(kateId, f.sender());

            String server = TestEnv.prop("tchap.serverName");
            assertCode("matrix_error",
                    () -> b.notification(roomId, "$unknown" + System.nanoTime() + ":" + server));
            assertCode("invalid_argument", () -> b.notification(roomId, "nope"));
            assertCode("invalid_argument",
                    () -> b.notification(roomId, eventId, Notification.MAX_WAIT.plusSeconds(1)));
            assertCode("invalid_argument",
                    () -> b.notification(roomId, eventId, Duration.ofMillis(-1)));
        }
        try {
            closed.notification("!r:x", "$e");
            fail("notification on a closed client");
        } catch (IllegalStateException expected) {
            // the handle guard
        }
    }

    /** Records {@link Listener#onNotification} by event id, and the event ids of onMessage. */
    private static final class NotifiedListener implements Listener {
        final Map<String, Notification> notified = new ConcurrentHashMap<>();
        final Set<String> messaged = ConcurrentHashMap.newKeySet();
        final Queue<String> problems = new ConcurrentLinkedQueue<>();

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {
            messaged.add(eventId);
        }

        @Override
        public void onNotification(Notification n) {
            if (!messaged.contains(n.eventId()) && n.kind() == Notification.Kind.MESSAGE) {
                problems.add("onNotification before onMessage: " + n);
            }
            notified.put(n.eventId(), n);
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
    public void theSyncThreadCallsOnNotificationForADirectMessage() throws Exception {
        TestEnv.User kate = TestEnv.users().get(10);
        TestEnv.User leo = TestEnv.users().get(11);
        try (SecureClient a = login(kate, "notif-sync-kate");
                SecureClient b = login(leo, "notif-sync-leo")) {
            String roomId = a.createRoom(null, b.session().userId());
            b.join(roomId);
            awaitJoined(a, roomId);
            b.syncOnce(0); // uploads leo's one-time keys before kate sends
            NotifiedListener listener = new NotifiedListener();
            b.startSync(listener);

            String text = "Point de situation dans une heure " + System.nanoTime();
            String eventId = a.send(roomId, text);
            Notification n = TestEnv.await("onNotification for the message", TIMEOUT_SECONDS,
                    () -> listener.notified.get(eventId));
            b.stopSync();
            assertEquals(Notification.Kind.MESSAGE, n.kind());
            assertEquals(text, n.body());
            assertEquals(roomId, n.roomId());
            assertTrue("a direct message notifies: " + n, n.notifies());
            assertFalse("no mention, no keyword: " + n, n.highlight());
            assertEquals("default", n.sound());
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());
        }
    }

    /**
     * A push while the same client's sync thread long-polls (persistent mode: a 60 s poll):
     * {@link SecureClient#notification} does not wait for the poll (the client lock is not held
     * during it), decrypts the message, and the sync thread still delivers it once.
     */
    @Test
    public void aNotificationIsAnsweredWhileTheSameClientsSyncThreadLongPolls() throws Exception {
        TestEnv.User kate = TestEnv.users().get(10);
        TestEnv.User leo = TestEnv.users().get(11);
        try (SecureClient a = login(kate, "notif-poll-kate");
                SecureClient b = login(leo, "notif-poll-leo")) {
            String roomId = a.createRoom(null, b.session().userId());
            b.join(roomId);
            awaitJoined(a, roomId);
            b.syncOnce(0);
            NotifiedListener listener = new NotifiedListener();
            java.util.List<String> delivered =
                    java.util.Collections.synchronizedList(new java.util.ArrayList<>());
            Listener counting = new Listener() {
                @Override
                public void onMessage(String roomId, String eventId, String sender,
                        String senderDisplayName, String body, String trust) {
                    delivered.add(eventId);
                    listener.onMessage(roomId, eventId, sender, senderDisplayName, body, trust);
                }

                @Override
                public void onSecurityEvent(String kind, String roomId, String userId,
                        String detail) {}

                @Override
                public void onSyncState(String state, String errorCode) {
                    listener.onSyncState(state, errorCode);
                }
            };
            b.startSync(counting, SyncMode.PERSISTENT);
            try {
                // Let the thread enter its long poll.
                Thread.sleep(1_000);
                String text = "Pendant la longue attente " + System.nanoTime();
                String eventId = a.send(roomId, text);
                java.util.concurrent.ExecutorService pool =
                        java.util.concurrent.Executors.newSingleThreadExecutor();
                try {
                    java.util.concurrent.Future<Notification> answer =
                            pool.submit(() -> b.notification(roomId, eventId));
                    // Well inside the 60 s poll: the notification path does not queue behind it.
                    Notification n = answer.get(30, TimeUnit.SECONDS);
                    assertEquals(text, n.body());
                    assertEquals(kate.localpart, n.senderName());
                } finally {
                    pool.shutdownNow();
                }
                TestEnv.await("the sync thread delivers it", TIMEOUT_SECONDS,
                        () -> delivered.contains(eventId) ? true : null);
                // A little longer: a second delivery would show here.
                Thread.sleep(2_000);
                int times = 0;
                for (String id : new java.util.ArrayList<>(delivered)) {
                    if (id.equals(eventId)) {
                        times++;
                    }
                }
                assertEquals("delivered once", 1, times);
            } finally {
                b.stopSync();
            }
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());
        }
    }
}
