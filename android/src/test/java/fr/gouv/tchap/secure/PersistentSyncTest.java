package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The persistent-connection mode of the sync thread (issue 17 item 3) on the real library and
 * Synapse. With {@link SyncMode#PERSISTENT} (60 s long polls), a message mike sends reaches
 * nina's listener ({@link Listener#onMessage} and {@link Listener#onNotification}) as soon as it
 * is sent, not at the end of the poll; {@link SecureClient#stopSync()} in the middle of an idle
 * poll returns at once, and no callback runs after it. Against a homeserver that refuses
 * connections (a closed port), the sync reports {@code "retrying"} and backs off;
 * {@link SecureClient#networkAvailable()} makes it retry at once and restarts the back-off from
 * its minimum. Users: mike (index 12) and nina (index 13), used by no other test class.
 */
public class PersistentSyncTest {
    private static final long TIMEOUT_SECONDS = 60;
    /** What an idle stopSync() may take: it must not wait for the 60 s poll. */
    private static final long STOP_BOUND_MS = 3_000;

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

    private static long millisSince(long nanoTime) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - nanoTime);
    }

    /**
     * Records what the sync thread calls: messages and notifications by event id, the time of
     * every {@code "retrying"}, and any callback after {@code stopSync()} returned.
     */
    private static final class Recorder implements Listener {
        final Map<String, Notification> notified = new ConcurrentHashMap<>();
        final Set<String> messaged = ConcurrentHashMap.newKeySet();
        final Queue<String> states = new ConcurrentLinkedQueue<>();
        /** {@code System.nanoTime()} of each "retrying". */
        final BlockingQueue<Long> retrying = new LinkedBlockingQueue<>();
        final Queue<String> retryCodes = new ConcurrentLinkedQueue<>();
        final Queue<String> problems = new ConcurrentLinkedQueue<>();
        volatile boolean stopReturned;

        private void called(String what) {
            if (stopReturned) {
                problems.add(what + " after stopSync() returned");
            }
        }

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {
            called("onMessage");
            messaged.add(eventId);
        }

        @Override
        public void onNotification(Notification n) {
            called("onNotification");
            notified.put(n.eventId(), n);
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {
            called("onSecurityEvent");
        }

        @Override
        public void onSyncState(String state, String errorCode) {
            called("onSyncState(" + state + ")");
            states.add(state);
            if ("retrying".equals(state)) {
                retryCodes.add(String.valueOf(errorCode));
                retrying.add(System.nanoTime());
            } else if ("failed".equals(state)) {
                problems.add("sync failed: " + errorCode);
            }
        }

        /** The time of the next "retrying", or an AssertionError. */
        long nextRetry() throws InterruptedException {
            Long at = retrying.poll(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            if (at == null) {
                throw new AssertionError("no \"retrying\" within " + TIMEOUT_SECONDS + " s; "
                        + "states " + states);
            }
            return at;
        }
    }

    @Test
    public void aPersistentSyncDeliversAtOnceAndStopsInTheMiddleOfItsLongPoll() throws Exception {
        TestEnv.User mike = TestEnv.users().get(12);
        TestEnv.User nina = TestEnv.users().get(13);
        try (SecureClient a = login(mike, "persist-mike");
                SecureClient b = login(nina, "persist-nina")) {
            String roomId = a.createRoom(null, b.session().userId());
            b.join(roomId);
            TestEnv.await("mike sees nina joined", TIMEOUT_SECONDS, () -> {
                a.syncOnce(0);
                for (Room r : a.rooms()) {
                    if (r.roomId().equals(roomId) && r.joinedMembers() == 2) {
                        return true;
                    }
                }
                return false;
            });
            b.syncOnce(0); // uploads nina's one-time keys before mike sends
            Recorder listener = new Recorder();
            b.startSync(listener, SyncMode.PERSISTENT);
            TestEnv.await("running", TIMEOUT_SECONDS, () -> listener.states.contains("running"));
            Thread.sleep(2_000); // nina's sync thread is now waiting in an idle 60 s long poll

            String text = "Astreinte de nuit confirmée " + System.nanoTime();
            long sent = System.nanoTime();
            String eventId = a.send(roomId, text);
            Notification n = TestEnv.await("onNotification for the message", TIMEOUT_SECONDS,
                    () -> listener.notified.get(eventId));
            long deliveredMs = millisSince(sent);
            assertTrue("onMessage before onNotification", listener.messaged.contains(eventId));
            assertEquals(text, n.body());
            assertTrue("a direct message notifies: " + n, n.notifies());
            // The long poll returned on the data, not at its 60 s end.
            assertTrue("delivered " + deliveredMs + " ms after the send", deliveredMs < 20_000);

            Thread.sleep(2_000); // idle again: the next 60 s poll is in flight
            long stopping = System.nanoTime();
            b.stopSync();
            listener.stopReturned = true;
            long stopMs = millisSince(stopping);
            assertTrue("stopSync() took " + stopMs + " ms in an idle long poll",
                    stopMs < STOP_BOUND_MS);
            assertEquals("stopped", last(listener.states));
            Thread.sleep(500);
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());
            System.out.println("PersistentSyncTest: delivered " + deliveredMs + " ms after the"
                    + " send during a 60 s long poll; stopSync() took " + stopMs + " ms");
        }
    }

    @Test
    public void networkAvailableEndsTheBackOffAtOnce() throws Exception {
        TestEnv.User mike = TestEnv.users().get(12);
        File dir = TestEnv.newDataDir("persist-offline");
        try (SecureClient c = SecureClient.open(TestEnv.config(), dir, TestEnv.mainBinder())) {
            c.login(mike.localpart, mike.password(), "jvm-persist-offline");
        }
        // The same session, reopened with the homeserver on a port nothing listens on: every
        // sync fails at once with a network error, as on a phone without network.
        int closedPort;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            closedPort = s.getLocalPort();
        }
        String url = TestEnv.prop("tchap.homeserverUrl");
        String json = new String(TestEnv.config(), StandardCharsets.UTF_8);
        assertTrue("tchap.config names " + url, json.contains(url));
        byte[] offline = json.replace(url, "https://localhost:" + closedPort)
                .getBytes(StandardCharsets.UTF_8);

        try (SecureClient c = SecureClient.open(offline, dir, TestEnv.mainBinder())) {
            c.networkAvailable(); // no sync thread: nothing happens
            Recorder listener = new Recorder();
            c.startSync(listener, SyncMode.PERSISTENT);
            long first = listener.nextRetry();
            long second = listener.nextRetry();
            long firstBackOffMs = TimeUnit.NANOSECONDS.toMillis(second - first);
            assertTrue("first back-off " + firstBackOffMs + " ms", firstBackOffMs >= 900);

            // Now backing off 2 s (or more): the network "returns".
            long signalled = System.nanoTime();
            c.networkAvailable();
            long third = listener.nextRetry();
            long resumedMs = TimeUnit.NANOSECONDS.toMillis(third - signalled);
            assertTrue("retried " + resumedMs + " ms after networkAvailable()",
                    resumedMs < 1_000);
            // The back-off starts again from 1 s (it would be 4 s otherwise).
            long fourth = listener.nextRetry();
            long restartedMs = TimeUnit.NANOSECONDS.toMillis(fourth - third);
            assertTrue("back-off after networkAvailable() " + restartedMs + " ms",
                    restartedMs >= 900 && restartedMs < 2_500);
            assertFalse("every \"retrying\" carries its error code: " + listener.retryCodes,
                    listener.retryCodes.contains("null"));

            long stopping = System.nanoTime();
            c.stopSync();
            listener.stopReturned = true;
            long stopMs = millisSince(stopping);
            assertTrue("stopSync() took " + stopMs + " ms in a back-off", stopMs < STOP_BOUND_MS);
            c.networkAvailable(); // the thread is gone: nothing happens
            assertEquals("stopped", last(listener.states));
            assertTrue(listener.problems.toString(), listener.problems.isEmpty());
            System.out.println("PersistentSyncTest: retries " + firstBackOffMs + " ms apart,"
                    + " then " + resumedMs + " ms after networkAvailable(), then "
                    + restartedMs + " ms (codes " + listener.retryCodes + ")");
        }
    }

    private static String last(Queue<String> states) {
        String last = null;
        for (String s : states) {
            last = s;
        }
        return last;
    }
}
