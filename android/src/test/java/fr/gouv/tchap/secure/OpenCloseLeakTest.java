package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * (e) Opening and closing a client 1,000 times on an existing, logged-in data directory (no
 * network: open only unwraps the vault through the token, opens the database and restores the
 * session) leaks neither memory nor threads.
 *
 * <p>Process RSS ({@code VmRSS} of {@code /proc/self/status}) may grow by at most
 * {@value #RSS_BOUND_MB} MB and the thread count ({@code /proc/self/task}) by at most
 * {@value #THREAD_BOUND}, measured after a warm-up of {@value #WARM_UP} cycles. The driver runs
 * the JVM with a fixed, pre-touched heap ({@code -Xms = -Xmx}, {@code -XX:+AlwaysPreTouch}), so
 * Java heap growth cannot hide in, or masquerade as, native growth. A leak of one runtime, one
 * database connection or one thread per open would exceed these bounds by far (each open builds
 * a tokio runtime, a SQLCipher connection and a TLS client configuration).
 */
public class OpenCloseLeakTest {
    static final int WARM_UP = 50;
    static final int CYCLES = 1000;
    static final long RSS_BOUND_MB = 64;
    static final int THREAD_BOUND = 2;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    static long rssKb() throws IOException {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }

    static int threads() {
        String[] tasks = new File("/proc/self/task").list();
        if (tasks == null) {
            throw new IllegalStateException("cannot list /proc/self/task");
        }
        return tasks.length;
    }

    private static void settle() throws InterruptedException {
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(200);
        }
    }

    @Test
    public void thousandOpenCloseCyclesDoNotLeak() throws Exception {
        TestEnv.User carol = TestEnv.users().get(2);
        byte[] config = TestEnv.config();
        File dir = TestEnv.newDataDir("leak");
        Session session;
        try (SecureClient c = SecureClient.open(config, dir, TestEnv.mainBinder())) {
            session = c.login(carol.localpart, carol.password(), "jvm-leak");
        }
        for (int i = 0; i < WARM_UP; i++) {
            cycle(config, dir, session);
        }
        settle();
        long rssBefore = rssKb();
        int threadsBefore = threads();
        long start = System.nanoTime();
        for (int i = 0; i < CYCLES; i++) {
            cycle(config, dir, session);
        }
        long elapsedMs = (System.nanoTime() - start) / 1_000_000;
        settle();
        long rssAfter = rssKb();
        int threadsAfter = threads();

        long growthKb = rssAfter - rssBefore;
        System.out.printf(java.util.Locale.ROOT,
                "OpenCloseLeakTest: %d open/close cycles in %d ms (%.1f ms each) after %d"
                        + " warm-up; VmRSS %d kB -> %d kB (%+d kB, bound %d MB); threads %d -> %d"
                        + " (%+d, bound +%d)%n",
                CYCLES, elapsedMs, (double) elapsedMs / CYCLES, WARM_UP, rssBefore, rssAfter,
                growthKb, RSS_BOUND_MB, threadsBefore, threadsAfter,
                threadsAfter - threadsBefore, THREAD_BOUND);
        assertTrue("RSS grew by " + growthKb + " kB over " + CYCLES + " cycles",
                growthKb <= RSS_BOUND_MB * 1024);
        assertTrue("thread count grew from " + threadsBefore + " to " + threadsAfter,
                threadsAfter - threadsBefore <= THREAD_BOUND);
    }

    private static void cycle(byte[] config, File dir, Session expected) throws Exception {
        SecureClient c = SecureClient.open(config, dir, TestEnv.mainBinder());
        try {
            assertEquals(expected, c.session());
        } finally {
            c.close();
        }
    }
}
