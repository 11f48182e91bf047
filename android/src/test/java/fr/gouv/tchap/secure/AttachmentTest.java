package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.Random;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Files through the Java API, end to end: the real library, a legacy-media Synapse behind the
 * real content scanner (matrix-content-scanner + ClamAV) and nginx as the only front. A
 * multi-megabyte file is sent from a raw descriptor (as Android's {@code detachFd()} gives it)
 * and from a path, downloaded through the scanner into a path and into a descriptor, verified
 * byte for byte; a download never overwrites; the EICAR file is refused and leaves nothing.
 */
public class AttachmentTest {
    private static final long TIMEOUT_SECONDS = 90;
    /** Not a multiple of the 64 KiB chunks, more than one upload buffer. */
    private static final int SIZE = 3 * 1024 * 1024 + 12_345;

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    /** Writes {@code SIZE} pseudo-random bytes to {@code file} in chunks; returns their SHA-256. */
    private static byte[] writeRandomFile(Path file, long seed) throws Exception {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        Random random = new Random(seed);
        byte[] chunk = new byte[64 * 1024];
        try (OutputStream out = Files.newOutputStream(file)) {
            int left = SIZE;
            while (left > 0) {
                int n = Math.min(left, chunk.length);
                random.nextBytes(chunk);
                out.write(chunk, 0, n);
                sha.update(chunk, 0, n);
                left -= n;
            }
        }
        return sha.digest();
    }

    private static byte[] sha256(Path file) throws Exception {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        byte[] chunk = new byte[64 * 1024];
        try (InputStream in = Files.newInputStream(file)) {
            int n;
            while ((n = in.read(chunk)) > 0) {
                sha.update(chunk, 0, n);
            }
        }
        return sha.digest();
    }

    /** A descriptor of {@code file} opened with {@code mode}, detached from the JVM. */
    private static int detachedFd(Path file, String mode) throws Exception {
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), mode)) {
            return Fds.detach(raf.getFD());
        }
    }

    private static Message awaitFileMessage(SecureClient c, String roomId, String eventId)
            throws Exception {
        return TestEnv.await("the file message " + eventId + " in the receiver's store",
                TIMEOUT_SECONDS, () -> {
                    for (Message m : c.messages(roomId, 200)) {
                        if (m.eventId().equals(eventId) && m.isDecrypted()) {
                            return m;
                        }
                    }
                    c.syncOnce(1000);
                    return null;
                });
    }

    private static void assertNoPartialFiles(Path dir) throws IOException {
        try (java.util.stream.Stream<Path> files = Files.list(dir)) {
            files.forEach(p -> assertFalse("a partial download was left: " + p,
                    p.getFileName().toString().startsWith(".tchap-secure-download-")));
        }
    }

    @Test
    public void aMultiMegabyteFileRoundTripsThroughTheScannerStreamedFromDescriptors()
            throws Exception {
        TestEnv.User xavier = TestEnv.scannerUsers().get(0);
        TestEnv.User yvonne = TestEnv.scannerUsers().get(1);
        byte[] config = TestEnv.scannerConfig();
        Path work = TestEnv.newDataDir("files-work").toPath();
        Files.createDirectories(work);
        Path source = work.resolve("source.bin");
        byte[] digest = writeRandomFile(source, System.nanoTime());

        File yDir = TestEnv.newDataDir("files-y");
        String roomId;
        String eventId;
        try (SecureClient x = SecureClient.open(config, TestEnv.newDataDir("files-x"),
                        TestEnv.mainBinder());
                SecureClient y = SecureClient.open(config, yDir, TestEnv.mainBinder())) {
            x.login(xavier.localpart, xavier.password(), "jvm-files-x");
            Session ySession = y.login(yvonne.localpart, yvonne.password(), "jvm-files-y");
            roomId = x.createRoom("Documents", ySession.userId());
            y.join(roomId);

            // Sent from a raw descriptor: the library owns it and closes it.
            int fd = detachedFd(source, "r");
            assertTrue("the detached descriptor is open", Fds.isOpenOn(fd, source));
            eventId = x.sendFile(roomId, fd, -1, "rapport annuel.bin",
                    "application/octet-stream");
            assertFalse("the library closed the descriptor it was given",
                    Fds.isOpenOn(fd, source));

            Message received = awaitFileMessage(y, roomId, eventId);
            Attachment a = received.attachment();
            assertNotNull("the message announces a file: " + received, a);
            assertEquals("m.file", a.msgtype());
            assertEquals("rapport annuel.bin", a.name());
            assertEquals("application/octet-stream", a.mimetype());
            assertEquals(SIZE, a.size());

            // Into a path: appears complete and verified.
            Path out = work.resolve("received.bin");
            assertEquals(SIZE, y.downloadFile(roomId, eventId, out.toFile()));
            assertArrayEquals("the downloaded file is the sent one", digest, sha256(out));
            assertNoPartialFiles(work);

            // Never over an existing file.
            try {
                y.downloadFile(roomId, eventId, out.toFile());
                fail("a download overwrote an existing file");
            } catch (TchapSecureException e) {
                assertEquals("file_exists", e.getCode());
            }
            assertArrayEquals(digest, sha256(out));

            // Into a descriptor of an empty file.
            Path viaFd = work.resolve("received-fd.bin");
            Files.createFile(viaFd);
            int outFd = detachedFd(viaFd, "rw");
            assertEquals(SIZE, y.downloadFile(roomId, eventId, outFd));
            assertFalse("the library closed the download's descriptor",
                    Fds.isOpenOn(outFd, viaFd));
            assertArrayEquals(digest, sha256(viaFd));

            // A descriptor of a file with content is refused, the content kept, the fd closed.
            int fullFd = detachedFd(viaFd, "rw");
            try {
                y.downloadFile(roomId, eventId, fullFd);
                fail("a download wrote into a non-empty file");
            } catch (TchapSecureException e) {
                assertEquals("file_exists", e.getCode());
            }
            assertFalse(Fds.isOpenOn(fullFd, viaFd));
            assertArrayEquals(digest, sha256(viaFd));

            // A read-only descriptor is not a download destination (and is closed).
            Path empty = work.resolve("empty.bin");
            Files.createFile(empty);
            int readOnly = detachedFd(empty, "r");
            try {
                y.downloadFile(roomId, eventId, readOnly);
                fail("downloaded into a read-only descriptor");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
            assertFalse(Fds.isOpenOn(readOnly, empty));
            assertEquals(0, Files.size(empty));

            // Not a descriptor at all.
            try {
                x.sendFile(roomId, 1_000_000, -1, "x", null);
                fail("sent from a descriptor that is not open");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }

            // The EICAR file, sent from its path: refused by the scanner, nothing written.
            String eicarEvent = x.sendFile(roomId, TestEnv.eicarFile(), "eicar.txt",
                    "text/plain");
            awaitFileMessage(y, roomId, eicarEvent);
            Path infected = work.resolve("eicar-received.txt");
            try {
                y.downloadFile(roomId, eicarEvent, infected.toFile());
                fail("the scanner let the EICAR file through");
            } catch (TchapSecureException e) {
                assertEquals("infected_file", e.getCode());
            }
            assertFalse("nothing of a refused file appears", Files.exists(infected));
            assertNoPartialFiles(work);
        }

        // Yvonne again, under a configuration pinning another scanner key (the scanner's own
        // is not in it): refused with a security event, nothing written.
        String pinned = "\"content_scanner_keys\"\\s*:\\s*\\[[^\\]]*\\]";
        byte[] otherKey = new String(config, StandardCharsets.UTF_8).replaceAll(pinned,
                "\"content_scanner_keys\":[\"7y6BLG/aMr8TA2KnaMnuHpqLVrRwAbal7xi1dPWZ+js\"]")
                .getBytes(StandardCharsets.UTF_8);
        assertFalse("the test configuration pins the scanner's key",
                Arrays.equals(otherKey, config));
        try (SecureClient y = SecureClient.open(otherKey, yDir, TestEnv.mainBinder())) {
            Path refused = work.resolve("unpinned-scanner.bin");
            try {
                y.downloadFile(roomId, eventId, refused.toFile());
                fail("a download went through a scanner whose key is not pinned");
            } catch (TchapSecureException e) {
                assertEquals("scanner_key_unpinned", e.getCode());
            }
            assertFalse(Files.exists(refused));
            assertNoPartialFiles(work);
        }
    }

    /** A descriptor handed to a closed client is still closed: ownership passed with the call. */
    @Test
    public void aDescriptorGivenToAClosedClientIsClosed() throws Exception {
        Path work = TestEnv.newDataDir("files-closed").toPath();
        Files.createDirectories(work);
        Path file = work.resolve("f.bin");
        Files.write(file, new byte[] {1, 2, 3});
        File dir = TestEnv.newDataDir("files-closed-client");
        SecureClient c = SecureClient.open(TestEnv.config(), dir, TestEnv.mainBinder());
        c.close();
        int fd = detachedFd(file, "r");
        assertTrue(Fds.isOpenOn(fd, file));
        try {
            c.sendFile("!r:x", fd, -1, "f.bin", null);
            fail("sendFile on a closed client");
        } catch (IllegalStateException expected) {
            // the guard
        }
        assertFalse("the descriptor was closed although the call never reached the library",
                Fds.isOpenOn(fd, file));
        int out = detachedFd(file, "rw");
        try {
            c.downloadFile("!r:x", "$e", out);
            fail("downloadFile on a closed client");
        } catch (IllegalStateException expected) {
            // the guard
        }
        assertFalse(Fds.isOpenOn(out, file));
    }
}
