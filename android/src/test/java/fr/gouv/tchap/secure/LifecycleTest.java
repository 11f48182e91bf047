package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.BeforeClass;
import org.junit.Test;

/** (c) Handle discipline: use after close, double close, close racing other calls. */
public class LifecycleTest {
    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private interface Call {
        void run(SecureClient c) throws Exception;
    }

    private static final Listener NO_OP = new Listener() {
        @Override
        public void onMessage(String roomId, String eventId, String sender,
                String senderDisplayName, String body, String trust) {}

        @Override
        public void onSecurityEvent(String kind, String roomId, String userId, String detail) {}

        @Override
        public void onSyncState(String state, String errorCode) {}
    };

    @Test
    public void everyCallAfterCloseThrowsIllegalStateAndCloseIsIdempotent() throws Exception {
        SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("closed"),
                TestEnv.mainBinder());
        assertNull("a new data directory has no session", c.session());
        assertFalse(c.isClosed());
        c.close();
        assertTrue(c.isClosed());
        c.close(); // harmless
        c.close();

        List<Call> calls = new ArrayList<>();
        calls.add(SecureClient::session);
        calls.add(SecureClient::whoami);
        calls.add(SecureClient::logout);
        calls.add(x -> x.syncOnce(0));
        calls.add(SecureClient::rooms);
        calls.add(x -> x.createRoom("r"));
        calls.add(x -> x.invite("!r:x", "@u:x"));
        calls.add(x -> x.join("!r:x"));
        calls.add(x -> x.leave("!r:x"));
        calls.add(x -> x.send("!r:x", "body"));
        calls.add(x -> x.messages("!r:x", 10));
        calls.add(x -> x.devices("@u:x"));
        calls.add(SecureClient::crossSigningStatus);
        calls.add(x -> x.bootstrapCrossSigning(null));
        calls.add(x -> x.identity("@u:x"));
        calls.add(x -> x.acknowledgeIdentityChange("@u:x", "key"));
        calls.add(x -> x.requestVerification("@u:x", null));
        calls.add(x -> x.requestDeviceVerification("@u:x", "DEVICE"));
        calls.add(x -> x.registerPusher("app", "key", "device"));
        calls.add(SecureClient::unregisterPushers);
        calls.add(SecureClient::pushers);
        calls.add(x -> x.acceptVerification("flow"));
        calls.add(x -> x.startSas("flow"));
        calls.add(x -> x.confirmSas("flow"));
        calls.add(x -> x.sasMismatch("flow"));
        calls.add(x -> x.cancelVerification("flow"));
        calls.add(x -> x.showQr("flow"));
        calls.add(x -> x.scanQr("flow", new byte[] {1, 2, 3}));
        calls.add(x -> x.confirmQrScanned("flow"));
        calls.add(x -> x.verification("flow"));
        calls.add(SecureClient::verifications);
        calls.add(x -> x.startSync(NO_OP));
        calls.add(x -> x.startSync(NO_OP, SyncMode.PERSISTENT));
        calls.add(SecureClient::stopSync);
        calls.add(SecureClient::networkAvailable);
        calls.add(SecureClient::wipe);
        for (int i = 0; i < calls.size(); i++) {
            try {
                calls.get(i).run(c);
                fail("call #" + i + " succeeded after close()");
            } catch (IllegalStateException expected) {
                // the guard
            }
        }

        // login zeroes the password even when it is refused before reaching the library.
        byte[] password = "secret password".getBytes(StandardCharsets.UTF_8);
        try {
            c.login("someone", password, "device");
            fail("login after close()");
        } catch (IllegalStateException expected) {
            assertArrayEquals(new byte[password.length], password);
        }
        // So do the cross-signing calls that take the password.
        byte[] resetPassword = "secret password".getBytes(StandardCharsets.UTF_8);
        try {
            c.resetCrossSigning(resetPassword);
            fail("resetCrossSigning after close()");
        } catch (IllegalStateException expected) {
            assertArrayEquals(new byte[resetPassword.length], resetPassword);
        }
        byte[] bootstrapPassword = "secret password".getBytes(StandardCharsets.UTF_8);
        try {
            c.bootstrapCrossSigning(bootstrapPassword);
            fail("bootstrapCrossSigning after close()");
        } catch (IllegalStateException expected) {
            assertArrayEquals(new byte[bootstrapPassword.length], bootstrapPassword);
        }
    }

    @Test
    public void loginZeroesThePasswordWhenTheServerRefusesIt() throws Exception {
        TestEnv.User user = TestEnv.users().get(0);
        try (SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("badpw"),
                TestEnv.mainBinder())) {
            byte[] wrong = "not the password".getBytes(StandardCharsets.UTF_8);
            try {
                c.login(user.localpart, wrong, "jvm-badpw");
                fail("login with a wrong password succeeded");
            } catch (TchapSecureException e) {
                assertEquals("forbidden", e.getCode());
            }
            assertArrayEquals(new byte[wrong.length], wrong);
            assertNull(c.session());
        }
    }

    @Test
    public void closeWhileEightThreadsCallIsSafe() throws Exception {
        SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("race"),
                TestEnv.mainBinder());
        int threads = 8;
        CountDownLatch started = new CountDownLatch(threads);
        AtomicInteger succeeded = new AtomicInteger();
        AtomicInteger refused = new AtomicInteger();
        List<Throwable> unexpected = new java.util.concurrent.CopyOnWriteArrayList<>();
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread worker = new Thread(() -> {
                started.countDown();
                while (true) {
                    try {
                        c.session();
                        c.rooms();
                        succeeded.incrementAndGet();
                    } catch (IllegalStateException closed) {
                        refused.incrementAndGet();
                        return;
                    } catch (Throwable e) {
                        unexpected.add(e);
                        return;
                    }
                }
            }, "lifecycle-race-" + t);
            worker.start();
            workers.add(worker);
        }
        started.await();
        Thread.sleep(200);
        c.close();
        for (Thread worker : workers) {
            worker.join(30_000);
            assertFalse(worker.getName() + " still running after close()", worker.isAlive());
        }
        assertTrue("unexpected failures: " + unexpected, unexpected.isEmpty());
        assertEquals("every thread ended on the closed guard", threads, refused.get());
        assertTrue("calls ran before close()", succeeded.get() > 0);
        System.out.println("LifecycleTest: " + succeeded.get() + " call pairs before close()");
    }

    /**
     * stopSync() waits for the sync thread; the sync thread's last callback calls into the
     * client; meanwhile another thread calls close(). Nothing may deadlock: the callback's call
     * is refused (the client is closing), stopSync() returns, close() completes.
     */
    @Test
    public void closeDuringStopSyncWhileACallbackCallsInDoesNotDeadlock() throws Exception {
        TestEnv.User user = TestEnv.users().get(0);
        SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("deadlock"),
                TestEnv.mainBinder());
        c.login(user.localpart, user.password(), "jvm-deadlock");
        CountDownLatch running = new CountDownLatch(1);
        CountDownLatch inLastCallback = new CountDownLatch(1);
        List<String> outcome = new java.util.concurrent.CopyOnWriteArrayList<>();
        c.startSync(new Listener() {
            @Override
            public void onMessage(String roomId, String eventId, String sender,
                    String senderDisplayName, String body, String trust) {}

            @Override
            public void onSecurityEvent(String kind, String roomId, String userId,
                    String detail) {}

            @Override
            public void onSyncState(String state, String errorCode) {
                if ("running".equals(state)) {
                    running.countDown();
                } else if ("stopped".equals(state)) {
                    inLastCallback.countDown();
                    try {
                        // Let close() start waiting for the write lock, then call in.
                        long deadline = System.nanoTime() + 10_000_000_000L;
                        while (!c.isClosed() && System.nanoTime() < deadline) {
                            Thread.sleep(10);
                        }
                        Thread.sleep(300);
                        c.rooms();
                        outcome.add("rooms() succeeded");
                    } catch (IllegalStateException closing) {
                        outcome.add("refused");
                    } catch (Exception e) {
                        outcome.add(e.toString());
                    }
                }
            }
        });
        assertTrue("sync running", running.await(30, java.util.concurrent.TimeUnit.SECONDS));
        Thread stopper = new Thread(() -> {
            try {
                c.stopSync();
            } catch (Exception e) {
                outcome.add("stopSync: " + e);
            }
        }, "stopper");
        stopper.start();
        assertTrue("the sync thread reached its last callback",
                inLastCallback.await(30, java.util.concurrent.TimeUnit.SECONDS));
        Thread closer = new Thread(c::close, "closer");
        closer.start();
        stopper.join(30_000);
        closer.join(30_000);
        assertFalse("deadlock: stopSync() did not return", stopper.isAlive());
        assertFalse("deadlock: close() did not return", closer.isAlive());
        assertEquals("[refused]", outcome.toString());
        assertTrue(c.isClosed());
    }

    @Test
    public void invalidConfigurationIsRefusedWithCodeConfig() throws Exception {
        try {
            SecureClient.checkConfig("{\"homeserver_url\":\"http://example.org\"}"
                    .getBytes(StandardCharsets.UTF_8));
            fail("an http:// configuration was accepted");
        } catch (TchapSecureException e) {
            assertEquals("config", e.getCode());
        }
        try (SecureClient c = SecureClient.open("{}".getBytes(StandardCharsets.UTF_8),
                TestEnv.newDataDir("badconfig"), TestEnv.mainBinder())) {
            fail("open accepted an empty configuration: " + c);
        } catch (TchapSecureException e) {
            assertEquals("config", e.getCode());
        }
    }
}
