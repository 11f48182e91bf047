package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.BeforeClass;
import org.junit.Test;

/** (d) Eight Java threads calling one client at once all succeed. */
public class ConcurrencyTest {
    private static final int THREADS = 8;
    private static final int ROUNDS = 25;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    @Test
    public void eightThreadsCallRoomsAndWhoamiConcurrently() throws Exception {
        TestEnv.User carol = TestEnv.users().get(2);
        try (SecureClient c = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("threads"),
                TestEnv.mainBinder())) {
            Session session = c.login(carol.localpart, carol.password(), "jvm-threads");
            String roomId = c.createRoom("Salle des threads");
            // The room list is the local store's: the new room is in it after a sync.
            TestEnv.await("the new room in rooms()", 30, () -> {
                c.syncOnce(0);
                for (Room room : c.rooms()) {
                    if (room.roomId().equals(roomId)) {
                        return true;
                    }
                }
                return false;
            });
            CyclicBarrier start = new CyclicBarrier(THREADS);
            AtomicInteger calls = new AtomicInteger();
            List<Throwable> failures = new CopyOnWriteArrayList<>();
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                Thread thread = new Thread(() -> {
                    try {
                        start.await();
                        for (int i = 0; i < ROUNDS; i++) {
                            boolean seen = false;
                            for (Room room : c.rooms()) {
                                seen |= room.roomId().equals(roomId);
                            }
                            if (!seen) {
                                throw new AssertionError("rooms() lacks " + roomId);
                            }
                            String me = c.whoami();
                            if (!session.userId().equals(me)) {
                                throw new AssertionError("whoami() = " + me);
                            }
                            calls.addAndGet(2);
                        }
                    } catch (Throwable e) {
                        failures.add(e);
                    }
                }, "concurrency-" + t);
                thread.start();
                threads.add(thread);
            }
            for (Thread thread : threads) {
                thread.join(120_000);
            }
            assertTrue("failures: " + failures, failures.isEmpty());
            assertEquals(THREADS * ROUNDS * 2, calls.get());
            System.out.println("ConcurrencyTest: " + calls.get() + " calls from " + THREADS
                    + " threads, all succeeded");
        }
    }
}
