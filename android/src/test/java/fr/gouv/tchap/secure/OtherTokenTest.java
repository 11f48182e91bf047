package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * (g) A data directory sealed by the main token cannot be opened with another token's binder:
 * a typed error, and not one byte of the directory changes.
 */
public class OtherTokenTest {
    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    /** Every regular file under {@code dir}, relative path → contents. */
    static Map<String, byte[]> snapshot(File dir) throws IOException {
        Map<String, byte[]> files = new TreeMap<>();
        Path root = dir.toPath();
        try (Stream<Path> walk = Files.walk(root)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                if (Files.isRegularFile(p)) {
                    files.put(root.relativize(p).toString(), Files.readAllBytes(p));
                }
            }
        }
        return files;
    }

    @Test
    public void anotherTokenCannotOpenTheDataDirectoryAndChangesNothing() throws Exception {
        byte[] config = TestEnv.config();
        File dir = TestEnv.newDataDir("othertoken");
        try (SecureClient c = SecureClient.open(config, dir, TestEnv.mainBinder())) {
            assertNull(c.session());
        }
        Map<String, byte[]> before = snapshot(dir);
        assertTrue("the sealed directory has a vault: " + before.keySet(),
                before.containsKey("vault.bin"));

        try (SecureClient c = SecureClient.open(config, dir, TestEnv.otherBinder())) {
            fail("the other token opened the data directory: " + c);
        } catch (TchapSecureException e) {
            assertTrue("code " + e.getCode() + ": " + e.getMessage(),
                    e.getCode().equals("kek_not_found") || e.getCode().equals("unwrap"));
        }

        Map<String, byte[]> after = snapshot(dir);
        assertEquals("same files", before.keySet(), after.keySet());
        for (Map.Entry<String, byte[]> file : before.entrySet()) {
            assertArrayEquals("bytes of " + file.getKey(), file.getValue(),
                    after.get(file.getKey()));
        }

        // The right token still opens it.
        try (SecureClient c = SecureClient.open(config, dir, TestEnv.mainBinder())) {
            assertNull(c.session());
        }
        assertFalse(TestEnv.otherBinder().describe().isEmpty());
    }
}
