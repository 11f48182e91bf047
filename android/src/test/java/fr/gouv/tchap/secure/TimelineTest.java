package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The timeline's Java API on the real library and Synapse: older history loaded on demand
 * ({@link SecureClient#loadOlder}), the send states of our own messages in
 * {@link SecureClient#messages}, in {@link TchapSecureException} and through
 * {@link Listener#onSendState}. Users: dave (index 3) and erin (index 4), with two devices.
 */
public class TimelineTest {
    private static final long TIMEOUT_SECONDS = 60;
    /** More than the sync's first slice of a room (its timeline filter asks for 50). */
    private static final int HISTORY = 70;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    /** Records {@link Listener#onSendState} calls as {@code roomId localId state eventId error}. */
    static final class SendStates implements Listener {
        final Queue<String[]> states = new ConcurrentLinkedQueue<>();
        final Queue<String> syncStates = new ConcurrentLinkedQueue<>();

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {}

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {}

        @Override
        public void onSyncState(String state, String errorCode) {
            syncStates.add(errorCode == null ? state : state + ":" + errorCode);
        }

        @Override
        public void onSendState(String roomId, String localId, String state, String eventId,
                String error) {
            states.add(new String[] {roomId, localId, state, eventId, error});
        }

        String[] find(String localId) {
            for (String[] s : states) {
                if (s[1].equals(localId)) {
                    return s;
                }
            }
            return null;
        }
    }

    private static SecureClient open(String prefix) throws Exception {
        return SecureClient.open(TestEnv.config(), TestEnv.newDataDir(prefix),
                TestEnv.mainBinder());
    }

    private static Message byEventId(SecureClient c, String roomId, String eventId)
            throws TchapSecureException {
        for (Message m : c.messages(roomId, 1000)) {
            if (m.eventId().equals(eventId)) {
                return m;
            }
        }
        return null;
    }

    private static Message byLocalId(SecureClient c, String roomId, String localId)
            throws TchapSecureException {
        for (Message m : c.messages(roomId, 1000)) {
            if (localId.equals(m.localId())) {
                return m;
            }
        }
        return null;
    }

    /**
     * Erin's second device logs in before the room exists (so dave's key shares reach it) but
     * syncs only after dave sent {@value #HISTORY} messages: its first sync brings the newest
     * slice, {@code loadOlder} the rest, decrypted, oldest first, down to the room's start.
     */
    @Test
    public void loadOlderBringsTheHistoryBeforeTheFirstSyncDecrypted() throws Exception {
        TestEnv.User dave = TestEnv.users().get(3);
        TestEnv.User erin = TestEnv.users().get(4);
        String prefix = "histoire " + System.nanoTime() + " #";
        try (SecureClient d = open("hist-dave");
                SecureClient e1 = open("hist-erin1");
                SecureClient e2 = open("hist-erin2")) {
            d.login(dave.localpart, dave.password(), "jvm-hist-dave");
            Session erin1 = e1.login(erin.localpart, erin.password(), "jvm-hist-erin1");
            TestEnv.holdIdentity(d, dave);
            TestEnv.holdIdentity(e1, erin);
            Session erin2 = e2.login(erin.localpart, erin.password(), "jvm-hist-erin2");
            // Room keys go only to devices the owner's identity signed: erin verifies her
            // second device from the first.
            TestEnv.verifyOwnDevice(e1, e2, erin1.userId());
            String roomId = d.createRoom("Historique", erin1.userId());
            e1.join(roomId);
            boolean knowsSecondDevice = false;
            for (Device device : d.devices(erin2.userId())) {
                knowsSecondDevice |= device.deviceId().equals(erin2.deviceId());
            }
            assertTrue("dave sees erin's second device before sending", knowsSecondDevice);

            for (int i = 0; i < HISTORY; i++) {
                d.send(roomId, prefix + i);
            }

            // The first sync of the second device: the newest slice only.
            e2.syncOnce(0);
            List<Integer> first = TestEnv.await("the second device's first slice, decrypted",
                    TIMEOUT_SECONDS, () -> {
                        List<Integer> seen = historyIndexes(e2.messages(roomId, 1000), prefix);
                        if (seen == null) {
                            e2.syncOnce(0);
                        }
                        return seen;
                    });
            assertFalse("the first sync brought some of the history", first.isEmpty());
            assertTrue("the first sync did not bring all " + HISTORY + " messages (" + first.size()
                    + "): nothing would be left to load", first.size() < HISTORY);
            assertEquals("the first slice is the newest", HISTORY - 1,
                    (int) first.get(first.size() - 1));

            // Scroll back, 15 at a time, until the start of the room.
            Map<String, Message> loaded = new LinkedHashMap<>();
            boolean reachedStart = false;
            int calls = 0;
            while (!reachedStart) {
                assertTrue("loadOlder reaches the start within 20 calls", ++calls <= 20);
                History h = e2.loadOlder(roomId, 15);
                int previous = Integer.MAX_VALUE;
                // Each call returns messages older than the previous call's, oldest first.
                List<Message> batch = h.messages();
                for (int i = batch.size() - 1; i >= 0; i--) {
                    Message m = batch.get(i);
                    assertNull("loaded twice: " + m, loaded.put(m.eventId(), m));
                    if (m.body() != null && m.body().startsWith(prefix)) {
                        int n = Integer.parseInt(m.body().substring(prefix.length()));
                        assertTrue("oldest first within a call", n < previous);
                        previous = n;
                    }
                }
                reachedStart = h.reachedStart();
            }
            List<Integer> older = new ArrayList<>();
            for (Message m : loaded.values()) {
                if (m.body() != null && m.body().startsWith(prefix)) {
                    assertEquals("loaded history is decrypted: " + m, Message.DECRYPTED,
                            m.state());
                    assertEquals(d.session().userId(), m.sender());
                    assertNull(m.localId());
                    older.add(Integer.parseInt(m.body().substring(prefix.length())));
                }
            }
            older.sort(null);
            List<Integer> expected = new ArrayList<>();
            for (int i = 0; i < first.get(0); i++) {
                expected.add(i);
            }
            assertEquals("loadOlder brought exactly the messages before the first slice",
                    expected, older);
            for (Message m : loaded.values()) {
                if (m.body() == null) {
                    fail("an older event was not decrypted: " + m);
                }
            }

            // The whole history is in the store now, in order, and nothing more comes.
            List<Integer> all = historyIndexes(e2.messages(roomId, 1000), prefix);
            assertNotNull("every stored message of the history is decrypted", all);
            List<Integer> everything = new ArrayList<>();
            for (int i = 0; i < HISTORY; i++) {
                everything.add(i);
            }
            assertEquals("the store holds the whole history, oldest first", everything, all);
            System.out.println("TimelineTest: first sync brought " + first.size() + " of "
                    + HISTORY + " messages; loadOlder(15) x" + calls + " brought "
                    + older.size() + " older ones (" + loaded.size() + " events)");
            History after = e2.loadOlder(roomId, 15);
            assertTrue(after.reachedStart());
            assertTrue("nothing older than the start: " + after.messages(),
                    after.messages().isEmpty());

            try {
                e2.loadOlder("!unknown:" + TestEnv.prop("tchap.serverName"), 10);
                fail("loadOlder of a room the client does not know");
            } catch (TchapSecureException expectedFailure) {
                assertEquals("invalid_argument", expectedFailure.getCode());
            }
        }
    }

    /**
     * The numbers of the history messages in {@code messages}, in their order; null while one
     * of them is not decrypted yet.
     */
    private static List<Integer> historyIndexes(List<Message> messages, String prefix) {
        List<Integer> seen = new ArrayList<>();
        for (Message m : messages) {
            if (m.body() != null && m.body().startsWith(prefix)) {
                if (!m.isDecrypted()) {
                    return null;
                }
                seen.add(Integer.parseInt(m.body().substring(prefix.length())));
            } else if (!m.isDecrypted() && m.sender().startsWith("@")
                    && !m.isLocalEcho()) {
                return null; // a message still waiting for its key
            }
        }
        return seen.isEmpty() ? null : seen;
    }

    /**
     * A sent message: its local echo keeps its local id once sent, and the listener hears
     * {@code sent} with the event id. A refused one: erin left on her other device, this one
     * still believes it is joined; the homeserver refuses the message, {@code send} throws
     * {@code send_failed} with the local id and {@code forbidden}, the echo is {@code failed},
     * and the next sync round reports it to {@code onSendState}.
     */
    @Test
    public void sendStatesReachMessagesTheExceptionAndTheListener() throws Exception {
        TestEnv.User dave = TestEnv.users().get(3);
        TestEnv.User erin = TestEnv.users().get(4);
        try (SecureClient d = open("state-dave");
                SecureClient e1 = open("state-erin1");
                SecureClient e2 = open("state-erin2")) {
            d.login(dave.localpart, dave.password(), "jvm-state-dave");
            Session erin1 = e1.login(erin.localpart, erin.password(), "jvm-state-erin1");
            TestEnv.holdIdentity(d, dave);
            TestEnv.holdIdentity(e1, erin);
            e2.login(erin.localpart, erin.password(), "jvm-state-erin2");
            TestEnv.verifyOwnDevice(e1, e2, erin1.userId());
            String roomId = d.createRoom("États d'envoi", erin1.userId());
            e1.join(roomId);

            // Sent: the listener hears it with the event id, the store keeps the local id.
            SendStates daveStates = new SendStates();
            d.startSync(daveStates);
            String body = "envoyé " + System.nanoTime();
            String eventId = d.send(roomId, body);
            Message own = byEventId(d, roomId, eventId);
            assertNotNull("the sent message is in the store under its event id", own);
            assertNotNull("our own message has a local id", own.localId());
            assertTrue("state after a successful send: " + own,
                    own.state().equals(Message.SENT) || own.state().equals(Message.DECRYPTED));
            assertEquals(body, own.body());
            String localId = own.localId();
            String[] sent = TestEnv.await("onSendState(sent) for " + localId, TIMEOUT_SECONDS,
                    () -> daveStates.find(localId));
            assertEquals(roomId, sent[0]);
            assertEquals(Message.SENT, sent[2]);
            assertEquals(eventId, sent[3]);
            assertNull(sent[4]);
            Message delivered = TestEnv.await("the sync returns our message", TIMEOUT_SECONDS,
                    () -> {
                        Message m = byEventId(d, roomId, eventId);
                        return m != null && m.isDecrypted() ? m : null;
                    });
            assertEquals("the local id survives the sync's copy", localId, delivered.localId());
            assertFalse(delivered.isLocalEcho());
            d.stopSync();

            // Refused: erin leaves on her other device; this one has not synced since.
            e2.leave(roomId);
            String refused = "après le départ " + System.nanoTime();
            String failedLocalId;
            try {
                e1.send(roomId, refused);
                fail("the homeserver accepted a message from a member who left");
                return;
            } catch (TchapSecureException e) {
                assertEquals(TchapSecureException.SEND_FAILED, e.getCode());
                assertEquals("forbidden", e.getReason());
                assertNotNull("send_failed carries the local id", e.getLocalId());
                failedLocalId = e.getLocalId();
            }
            Message echo = byLocalId(e1, roomId, failedLocalId);
            assertNotNull("the refused message's echo is in the store", echo);
            assertEquals(Message.FAILED, echo.state());
            assertEquals("forbidden", echo.error());
            assertEquals(refused, echo.body());
            assertTrue(echo.isLocalEcho());
            assertTrue("a refused message keeps a local event id: " + echo,
                    echo.eventId().startsWith("~"));

            SendStates erinStates = new SendStates();
            e1.startSync(erinStates);
            String[] failed = TestEnv.await("onSendState(failed) for " + failedLocalId,
                    TIMEOUT_SECONDS, () -> erinStates.find(failedLocalId));
            e1.stopSync();
            assertEquals(roomId, failed[0]);
            assertEquals(Message.FAILED, failed[2]);
            assertNull("a failed message has no event id", failed[3]);
            assertEquals("forbidden", failed[4]);
            for (String s : erinStates.syncStates) {
                assertFalse("sync failed: " + erinStates.syncStates, s.startsWith("failed"));
            }

            // Other errors carry no local id.
            try {
                e1.send("!unknown:" + TestEnv.prop("tchap.serverName"), "x");
                fail("sent to an unknown room");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
                assertNull(e.getLocalId());
                assertNull(e.getReason());
            }
        }
    }

    /** A listener written before onSendState existed still compiles and runs. */
    @Test
    public void aListenerWithoutOnSendStateStillWorks() throws Exception {
        Listener old = new Listener() {
            @Override
            public void onMessage(String roomId, String eventId, String sender,
                    String senderDisplayName, String body, String trust) {}

            @Override
            public void onSecurityEvent(String kind, String roomId, String userId,
                    String detail) {}

            @Override
            public void onSyncState(String state, String errorCode) {}
        };
        old.onSendState("!r:x", "l", "sent", "$e", null); // the default does nothing
        File dir = TestEnv.newDataDir("old-listener");
        try (SecureClient c = SecureClient.open(TestEnv.config(), dir, TestEnv.mainBinder())) {
            TestEnv.User carol = TestEnv.users().get(2);
            c.login(carol.localpart, carol.password(), "jvm-old-listener");
            c.startSync(old);
            c.stopSync();
            c.logout();
        }
    }

    /**
     * Erin has a position in the room, then is offline while dave sends {@value #HISTORY}
     * messages (more than a sync's slice): the background sync opens a gap, fills it, and the
     * listener hears every message, in order, once.
     */
    @Test
    public void theBackgroundSyncDeliversEveryMessageOfAGapInOrder() throws Exception {
        TestEnv.User dave = TestEnv.users().get(3);
        TestEnv.User erin = TestEnv.users().get(4);
        String prefix = "vol " + System.nanoTime() + " #";
        try (SecureClient d = open("gap-dave"); SecureClient e = open("gap-erin")) {
            d.login(dave.localpart, dave.password(), "jvm-gap-dave");
            Session erinSession = e.login(erin.localpart, erin.password(), "jvm-gap-erin");
            TestEnv.holdIdentity(d, dave);
            TestEnv.holdIdentity(e, erin);
            String roomId = d.createRoom("Vol", erinSession.userId());
            e.join(roomId);
            e.syncOnce(0);
            d.syncOnce(0);
            for (int i = 0; i < HISTORY; i++) {
                d.send(roomId, prefix + i);
            }
            final Queue<String> bodies = new ConcurrentLinkedQueue<>();
            Listener listener = new Listener() {
                @Override
                public void onMessage(String room, String eventId, String sender,
                        String senderDisplayName, String body, String trust) {
                    if (room.equals(roomId) && body != null && body.startsWith(prefix)) {
                        bodies.add(body);
                    }
                }

                @Override
                public void onSecurityEvent(String kind, String room, String userId,
                        String detail) {}

                @Override
                public void onSyncState(String state, String errorCode) {}
            };
            e.startSync(listener);
            try {
                TestEnv.await("all " + HISTORY + " messages through the listener",
                        TIMEOUT_SECONDS, () -> bodies.size() >= HISTORY);
            } finally {
                e.stopSync();
            }
            List<String> expected = new ArrayList<>();
            for (int i = 0; i < HISTORY; i++) {
                expected.add(prefix + i);
            }
            assertEquals("every message once, in the server's order", expected,
                    new ArrayList<>(bodies));
            List<String> stored = new ArrayList<>();
            for (Message m : e.messages(roomId, 1000)) {
                if (m.body() != null && m.body().startsWith(prefix)) {
                    assertEquals(Message.DECRYPTED, m.state());
                    stored.add(m.body());
                }
            }
            assertEquals("the store holds them in the same order", expected, stored);
        }
    }
}
