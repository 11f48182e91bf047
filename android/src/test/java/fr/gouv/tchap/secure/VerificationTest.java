package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Interactive verification through the Java API (issue 16): two devices of the same user,
 * each with its own data directory, the first (which created the user's cross-signing identity
 * at login) verifying the second by SAS over to-device messages, on the real library and
 * Synapse.
 *
 * <p>Henry (first test) and iris (second) are used by no other test class, so each test's
 * trust conclusions are its own. Device B of the first test syncs on the background thread and
 * sees the flow through {@link Listener#onVerification}; the second test drives both devices
 * with {@link SecureClient#syncOnce} and reads {@link SecureClient#verifications()}.
 */
public class VerificationTest {
    private static final long TIMEOUT_SECONDS = 90;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    /** One logged-in device: its client and session. */
    private static final class DeviceClient {
        final SecureClient client;
        final Session session;

        DeviceClient(SecureClient client, Session session) {
            this.client = client;
            this.session = session;
        }
    }

    private static DeviceClient login(TestEnv.User user, String name) throws Exception {
        SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir(name),
                TestEnv.mainBinder());
        try {
            return new DeviceClient(c, c.login(user.localpart, user.password(), "jvm-" + name));
        } catch (TchapSecureException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    /** Records every verification the background sync reports, and the sync states. */
    private static final class VerificationListener implements Listener {
        final Queue<Verification> verifications = new ConcurrentLinkedQueue<>();
        final Queue<String> states = new ConcurrentLinkedQueue<>();

        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {}

        @Override
        public void onVerification(Verification verification) {
            verifications.add(verification);
        }

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {}

        @Override
        public void onSyncState(String state, String errorCode) {
            states.add(errorCode == null ? state : state + ":" + errorCode);
        }

        /** The last state reported for {@code flowId} if it is {@code state}, else null. */
        Verification reported(String flowId, String state) {
            for (Verification v : verifications) {
                if (v.flowId().equals(flowId) && v.state().equals(state)) {
                    return v;
                }
            }
            return null;
        }

        void assertNotFailed() {
            for (String state : states) {
                assertFalse("sync failed: " + states, state.startsWith("failed"));
            }
        }
    }

    /**
     * Polls {@code probe}, syncing each of {@code syncing} once (0.5 s long-poll) between
     * probes, until it returns non-null (or true).
     */
    private static <T> T driving(String what, List<SecureClient> syncing, Callable<T> probe)
            throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_SECONDS);
        while (true) {
            T value = probe.call();
            if (value != null && !Boolean.FALSE.equals(value)) {
                return value;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + TIMEOUT_SECONDS
                        + " s waiting for " + what);
            }
            for (SecureClient c : syncing) {
                c.syncOnce(500);
            }
        }
    }

    private static Verification inState(SecureClient c, String flowId, String state)
            throws TchapSecureException {
        Verification v = c.verification(flowId);
        return v != null && v.state().equals(state) ? v : null;
    }

    private static boolean hasEmoji(SecureClient c, String flowId) throws TchapSecureException {
        Verification v = c.verification(flowId);
        return v != null && !v.emoji().isEmpty();
    }

    private static Device deviceOf(SecureClient viewer, String userId, String deviceId)
            throws TchapSecureException {
        for (Device d : viewer.devices(userId)) {
            if (d.deviceId().equals(deviceId)) {
                return d;
            }
        }
        throw new AssertionError("device " + deviceId + " not listed");
    }

    private static void assertSameSas(Verification a, Verification b) {
        assertEquals("seven emoji: " + a, 7, a.emoji().size());
        assertEquals("the same emoji on both devices", a.emoji(), b.emoji());
        for (SasEmoji e : a.emoji()) {
            assertFalse(e.symbol().isEmpty());
            assertFalse(e.description().isEmpty());
        }
        int[] numbers = a.decimals();
        assertNotNull("three numbers", numbers);
        assertEquals(3, numbers.length);
        assertArrayEquals("the same numbers on both devices", numbers, b.decimals());
        for (int n : numbers) {
            assertTrue("SAS number in 1000..9191: " + n, n >= 1000 && n <= 9191);
        }
    }

    @Test
    public void sasBetweenTwoOwnDevicesVerifiesTheSecondOne() throws Exception {
        TestEnv.User henry = TestEnv.users().get(7);
        DeviceClient a = login(henry, "vf-henry-a");
        DeviceClient b = null;
        try {
            b = login(henry, "vf-henry-b");
            String own = a.session.userId();
            String deviceA = a.session.deviceId();
            String deviceB = b.session.deviceId();
            assertTrue("A created the identity", a.client.crossSigningStatus().hasPrivateKeys());
            CrossSigningStatus before = b.client.crossSigningStatus();
            assertFalse("B holds no keys", before.hasPrivateKeys());
            assertFalse("B is not signed yet", before.isDeviceSigned());
            assertNotEquals(Identity.VERIFIED, before.identityState());
            a.client.syncOnce(0);

            VerificationListener listener = new VerificationListener();
            b.client.startSync(listener);

            String flowId = a.client.requestVerification(own, null);
            Verification requested = a.client.verification(flowId);
            assertEquals(Verification.REQUESTED, requested.state());
            assertTrue(requested.weRequested());
            assertEquals(own, requested.userId());
            assertNull("to-device", requested.roomId());
            assertTrue(a.client.verifications().contains(requested));

            // B learns of the request from its background sync.
            Verification received = TestEnv.await("onVerification(received) on B",
                    TIMEOUT_SECONDS, () -> listener.reported(flowId, Verification.RECEIVED));
            assertFalse(received.weRequested());
            assertEquals(own, received.userId());
            assertEquals(deviceA, received.deviceId());
            assertTrue("SAS offered: " + received.theirMethods(),
                    received.theirMethods().contains(Verification.METHOD_SAS));
            assertTrue(received.emoji().isEmpty());
            assertNull(received.decimals());
            assertEquals(received, b.client.verification(flowId));

            Verification accepted = b.client.acceptVerification(flowId);
            assertEquals(Verification.READY, accepted.state());
            List<SecureClient> onlyA = Arrays.asList(a.client);
            driving("ready on A", onlyA, () -> inState(a.client, flowId, Verification.READY));

            a.client.startSas(flowId);
            DeviceClient bb = b;
            driving("the emoji on both devices", onlyA,
                    () -> hasEmoji(a.client, flowId) && hasEmoji(bb.client, flowId));
            Verification shownA = a.client.verification(flowId);
            Verification shownB = b.client.verification(flowId);
            assertEquals(Verification.SAS_KEYS_EXCHANGED, shownA.state());
            assertEquals(Verification.SAS_KEYS_EXCHANGED, shownB.state());
            assertSameSas(shownA, shownB);
            assertEquals("the emoji reached B's listener too", shownB.emoji(), TestEnv.await(
                    "onVerification with emoji on B", TIMEOUT_SECONDS,
                    () -> {
                        Verification v = listener.reported(flowId,
                                Verification.SAS_KEYS_EXCHANGED);
                        return v == null || v.emoji().isEmpty() ? null : v;
                    }).emoji());

            a.client.confirmSas(flowId);
            b.client.confirmSas(flowId);
            Verification doneA = driving("done on both devices", onlyA, () -> {
                Verification onB = inState(bb.client, flowId, Verification.DONE);
                return onB == null ? null : inState(a.client, flowId, Verification.DONE);
            });
            Verification doneB = b.client.verification(flowId);
            assertTrue(doneA.isDone());
            assertTrue(doneB.isDone());
            assertFalse(doneA.isCancelled());
            assertNull(doneA.cancelCode());
            assertTrue("A verified B's device: " + doneA.verified(),
                    doneA.verified().contains("device " + own + " " + deviceB));
            assertFalse("B verified something: " + doneB, doneB.verified().isEmpty());
            TestEnv.await("onVerification(done) on B", TIMEOUT_SECONDS,
                    () -> listener.reported(flowId, Verification.DONE));

            // A signed B's device with our self-signing key; B now trusts our identity.
            Device seen = deviceOf(a.client, own, deviceB);
            assertTrue("B's device is cross-signed: " + seen, seen.isCrossSigned());
            assertEquals(Device.VERIFIED, seen.trust());
            assertEquals(Identity.VERIFIED, b.client.crossSigningStatus().identityState());

            b.client.stopSync();
            listener.assertNotFailed();
        } finally {
            a.client.close();
            if (b != null) {
                b.client.close();
            }
        }
    }

    @Test
    public void aMismatchCancelsOnBothSidesAndTrustsNothing() throws Exception {
        TestEnv.User iris = TestEnv.users().get(8);
        DeviceClient a = login(iris, "vf-iris-a");
        DeviceClient b = null;
        try {
            b = login(iris, "vf-iris-b");
            DeviceClient bb = b;
            String own = a.session.userId();
            String deviceB = b.session.deviceId();
            List<SecureClient> both = Arrays.asList(a.client, b.client);
            a.client.syncOnce(0);
            b.client.syncOnce(0);

            // A device the user does not have: refused before anything is sent.
            try {
                a.client.requestDeviceVerification(own, "NOSUCHDEVICE");
                fail("a verification request to an unknown device was sent");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
            // Asked by name: only device B receives the request.
            String flowId = a.client.requestDeviceVerification(own, deviceB);
            // B finds the request in verifications() after a sync.
            Verification received = driving("the request in B's verifications()", both, () -> {
                for (Verification v : bb.client.verifications()) {
                    if (v.flowId().equals(flowId)) {
                        return v;
                    }
                }
                return null;
            });
            assertEquals(Verification.RECEIVED, received.state());
            assertFalse(received.weRequested());

            bb.client.acceptVerification(flowId);
            driving("ready on A", both, () -> inState(a.client, flowId, Verification.READY));
            a.client.startSas(flowId);
            driving("the emoji on both devices", both,
                    () -> hasEmoji(a.client, flowId) && hasEmoji(bb.client, flowId));
            assertSameSas(a.client.verification(flowId), b.client.verification(flowId));

            // B's user says the emoji differ.
            Verification refused = b.client.sasMismatch(flowId);
            assertTrue(refused.isCancelled());
            assertEquals(Verification.CANCEL_MISMATCHED_SAS, refused.cancelCode());
            assertEquals(Boolean.TRUE, refused.cancelledByUs());
            Verification onA = driving("cancelled on A", both,
                    () -> inState(a.client, flowId, Verification.CANCELLED));
            assertEquals(Verification.CANCEL_MISMATCHED_SAS, onA.cancelCode());
            assertEquals(Boolean.FALSE, onA.cancelledByUs());
            assertTrue(onA.verified().isEmpty());
            assertTrue(b.client.verification(flowId).verified().isEmpty());

            // A cancelled flow cannot be confirmed any more.
            try {
                a.client.confirmSas(flowId);
                fail("confirmSas on a cancelled flow succeeded");
            } catch (TchapSecureException expected) {
                assertEquals("finished", expected.getCode());
            }

            // Nothing was trusted.
            Device seen = deviceOf(a.client, own, deviceB);
            assertFalse("B's device is not cross-signed: " + seen, seen.isCrossSigned());
            assertNotEquals(Device.VERIFIED, seen.trust());
            CrossSigningStatus statusB = b.client.crossSigningStatus();
            assertFalse(statusB.isDeviceSigned());
            assertNotEquals(Identity.VERIFIED, statusB.identityState());

            // An unknown flow id is the caller's mistake.
            assertNull(a.client.verification("no-such-flow"));
            try {
                a.client.acceptVerification("no-such-flow");
                fail("accepted an unknown flow");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
            try {
                a.client.startSas("no-such-flow");
                fail("started SAS on an unknown flow");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
            try {
                a.client.showQr("no-such-flow");
                fail("a QR code for an unknown flow");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
        } finally {
            a.client.close();
            if (b != null) {
                b.client.close();
            }
        }
    }
}
