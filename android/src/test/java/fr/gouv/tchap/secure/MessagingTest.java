package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * (a) Two clients on the real library, the real Synapse and SoftHSM2 keys: an encrypted room,
 * an invitation, messages both ways received through {@link Listener} callbacks of the
 * background sync, then a reopened client that restores its session without logging in.
 */
public class MessagingTest {
    private static final long TIMEOUT_SECONDS = 60;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    /** Records callbacks; {@link #expect} returns a latch counted down when a body arrives. */
    static final class RecordingListener implements Listener {
        final Map<String, CountDownLatch> expected = new ConcurrentHashMap<>();
        final Map<String, String[]> received = new ConcurrentHashMap<>();
        final Queue<String> states = new ConcurrentLinkedQueue<>();
        final Queue<String> securityEvents = new ConcurrentLinkedQueue<>();
        /** Set to read the store from inside the callback, as a UI refresh would. */
        volatile SecureClient client;
        final Queue<String> storeProblems = new ConcurrentLinkedQueue<>();
        final java.util.concurrent.atomic.AtomicInteger storeChecks =
                new java.util.concurrent.atomic.AtomicInteger();

        CountDownLatch expect(String body) {
            CountDownLatch latch = new CountDownLatch(1);
            expected.put(body, latch);
            return latch;
        }

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {
            if (body == null) {
                return;
            }
            SecureClient c = client;
            if (c != null) {
                // Calling back into the client from the sync thread is allowed, and the
                // message is already committed to the store when its callback runs.
                try {
                    boolean inStore = false;
                    for (Message m : c.messages(roomId, 100)) {
                        inStore |= m.eventId().equals(eventId);
                    }
                    storeChecks.incrementAndGet();
                    if (!inStore) {
                        storeProblems.add(eventId + " not in the store during its callback");
                    }
                } catch (Exception e) {
                    storeProblems.add(e.toString());
                }
            }
            received.put(body, new String[] {roomId, eventId, sender, senderDisplayName, trust});
            CountDownLatch latch = expected.get(body);
            if (latch != null) {
                latch.countDown();
            }
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {
            securityEvents.add(kind + " " + roomId + " " + userId);
        }

        @Override
        public void onSyncState(String state, String errorCode) {
            states.add(errorCode == null ? state : state + ":" + errorCode);
        }

        void assertNotFailed() {
            for (String state : states) {
                assertFalse("sync failed: " + states, state.startsWith("failed"));
            }
        }
    }

    private static Room room(SecureClient client, String roomId) throws TchapSecureException {
        for (Room room : client.rooms()) {
            if (room.roomId().equals(roomId)) {
                return room;
            }
        }
        return null;
    }

    @Test
    public void encryptedExchangeThroughListenersThenSessionRestored() throws Exception {
        List<TestEnv.User> users = TestEnv.users();
        TestEnv.User alice = users.get(0);
        TestEnv.User bob = users.get(1);
        File dirA = TestEnv.newDataDir("alice");
        File dirB = TestEnv.newDataDir("bob");
        byte[] config = TestEnv.config();
        Session sessionA;
        String roomId;
        String toBob = "Bonjour Bob, ceci est chiffré 🔒 " + System.nanoTime();
        String toAlice = "Bien reçu, Alice " + System.nanoTime();

        long started = System.nanoTime();
        try (SecureClient a = SecureClient.open(config, dirA, TestEnv.mainBinder());
                SecureClient b = SecureClient.open(config, dirB, TestEnv.mainBinder())) {
            sessionA = a.login(alice.localpart, alice.password(), "jvm-alice");
            Session sessionB = b.login(bob.localpart, bob.password(), "jvm-bob");
            TestEnv.holdIdentity(a, alice);
            TestEnv.holdIdentity(b, bob);
            assertTrue(sessionA.userId().startsWith("@" + alice.localpart + ":"));
            assertEquals(sessionA, a.session());

            RecordingListener listenerA = new RecordingListener();
            RecordingListener listenerB = new RecordingListener();
            listenerB.client = b;
            a.startSync(listenerA);
            b.startSync(listenerB);

            roomId = a.createRoom("Salle JVM", sessionB.userId());
            String id = roomId;
            // The room list is the local store's: the room appears once the sync brought it.
            Room created = TestEnv.await("Alice's room list shows the new room",
                    TIMEOUT_SECONDS, () -> room(a, id));
            assertTrue("created rooms are Megolm-encrypted: " + created, created.isEncrypted());

            Room invited = TestEnv.await("Bob sees the invitation", TIMEOUT_SECONDS, () -> {
                Room r = room(b, id);
                return r != null && r.isInvite() ? r : null;
            });
            assertEquals("invite", invited.membership());
            b.join(roomId);
            TestEnv.await("Alice sees Bob joined", TIMEOUT_SECONDS, () -> {
                Room r = room(a, id);
                return r != null && r.joinedMembers() == 2;
            });
            Room joined = TestEnv.await("Bob's room list shows the joined, encrypted room",
                    TIMEOUT_SECONDS, () -> {
                        Room r = room(b, id);
                        return r != null && !r.isInvite() && r.isEncrypted() ? r : null;
                    });
            assertEquals(Room.MEGOLM, joined.encryption());

            CountDownLatch bobGot = listenerB.expect(toBob);
            String eventToBob = a.send(roomId, toBob);
            assertTrue("Bob's listener received Alice's message within " + TIMEOUT_SECONDS
                            + " s; states " + listenerB.states,
                    bobGot.await(TIMEOUT_SECONDS, TimeUnit.SECONDS));
            String[] got = listenerB.received.get(toBob);
            assertEquals(roomId, got[0]);
            assertEquals(eventToBob, got[1]);
            assertEquals(sessionA.userId(), got[2]);
            assertNotNull("trust of the sending device", got[4]);

            CountDownLatch aliceGot = listenerA.expect(toAlice);
            b.send(roomId, toAlice);
            assertTrue("Alice's listener received Bob's message; states " + listenerA.states,
                    aliceGot.await(TIMEOUT_SECONDS, TimeUnit.SECONDS));
            assertEquals(sessionB.userId(), listenerA.received.get(toAlice)[2]);

            // A burst: every message arrives, and a 20-row table (140 strings) crosses JNI (under
            // -Xcheck:jni, the driver fails on any local-reference overflow in the bridge).
            int burst = 20;
            String prefix = "rafale " + System.nanoTime() + " #";
            CountDownLatch lastGot = listenerB.expect(prefix + (burst - 1));
            long sending = System.nanoTime();
            for (int i = 0; i < burst; i++) {
                a.send(roomId, prefix + i);
            }
            long sendMs = (System.nanoTime() - sending) / 1_000_000;
            assertTrue("the burst reached Bob's listener",
                    lastGot.await(TIMEOUT_SECONDS, TimeUnit.SECONDS));
            int inStore = TestEnv.await("the whole burst in Bob's store", TIMEOUT_SECONDS, () -> {
                int n = 0;
                for (Message m : b.messages(id, 100)) {
                    if (m.isDecrypted() && m.body() != null && m.body().startsWith(prefix)) {
                        n++;
                    }
                }
                return n == burst ? n : null;
            });
            assertEquals(burst, inStore);
            for (int i = 0; i < burst; i++) {
                assertNotNull("message " + i + " through the listener",
                        listenerB.received.get(prefix + i));
            }

            // The store holds the decrypted message too.
            boolean found = false;
            for (Message m : b.messages(roomId, 50)) {
                if (toBob.equals(m.body())) {
                    assertTrue(m.isDecrypted());
                    assertEquals(eventToBob, m.eventId());
                    assertEquals(sessionA.deviceId(), m.senderDevice());
                    found = true;
                }
            }
            assertTrue("Bob's store has the decrypted message", found);

            // Bob's device as Alice pins it: trust on first use.
            boolean bobDevice = false;
            for (Device d : a.devices(sessionB.userId())) {
                if (d.deviceId().equals(sessionB.deviceId())) {
                    assertEquals(Device.TOFU, d.state());
                    assertFalse(d.isDeleted());
                    bobDevice = true;
                }
            }
            assertTrue("Alice knows Bob's device", bobDevice);

            long stopping = System.nanoTime();
            a.stopSync();
            b.stopSync();
            System.out.printf(java.util.Locale.ROOT,
                    "MessagingTest: open, login, room, invite, join, one message each way and a"
                            + " %d-message burst in %d ms (the burst's sends: %d ms, %d ms per"
                            + " send, sync thread running); stopSync x2 in %d ms%n",
                    burst, (stopping - started) / 1_000_000, sendMs, sendMs / burst,
                    (System.nanoTime() - stopping) / 1_000_000);
            listenerA.assertNotFailed();
            listenerB.assertNotFailed();
            assertTrue("store reads from Bob's callbacks: " + listenerB.storeProblems,
                    listenerB.storeProblems.isEmpty());
            assertTrue("Bob's callbacks read the store", listenerB.storeChecks.get() >= burst + 1);
        }

        // Reopened: the session comes back from the sealed store, without a login.
        try (SecureClient again = SecureClient.open(config, dirA, TestEnv.mainBinder())) {
            assertEquals(sessionA, again.session());
            assertEquals(sessionA.userId(), again.whoami());
            boolean stillThere = false;
            for (Message m : again.messages(roomId, 50)) {
                stillThere |= toAlice.equals(m.body());
            }
            assertTrue("messages survive the reopen", stillThere);
        }
    }

    @Test
    public void loginAgainWhileLoggedInIsRefused() throws Exception {
        TestEnv.User carol = TestEnv.users().get(2);
        try (SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("twice"),
                TestEnv.mainBinder())) {
            c.login(carol.localpart, carol.password(), "jvm-twice");
            try {
                c.login(carol.localpart, carol.password(), "jvm-twice-2");
                fail("a second login on a logged-in client must be refused");
            } catch (TchapSecureException e) {
                assertNotNull(e.getCode());
            }
            c.logout();
            assertEquals(null, c.session());
        }
    }
}
