package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import javax.crypto.SecretKey;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * (h) The host key binder on a real SoftHSM2 token through SunPKCS11: the wrap format, AES-GCM
 * authentication, non-extractable keys, destruction, PIN handling.
 */
public class Pkcs11KeyBinderTest {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final byte[] AAD = "tchap-secure/v1 @alice:example DEVICE".getBytes(
            StandardCharsets.UTF_8);

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static byte[] newKeyId() {
        byte[] id = new byte[16];
        RANDOM.nextBytes(id);
        return id;
    }

    private static void expect(KeyBinderException.Reason reason, ThrowingRunnable body) {
        try {
            body.run();
            fail("expected " + reason);
        } catch (KeyBinderException e) {
            assertEquals(e.getMessage(), reason, e.getReason());
            assertEquals(reason.name(), e.reasonName());
        }
    }

    private interface ThrowingRunnable {
        void run() throws KeyBinderException;
    }

    @Test
    public void wrapUnwrapRoundTripAndFormat() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        byte[] id = newKeyId();
        binder.generate(id);
        byte[] secret = new byte[32];
        RANDOM.nextBytes(secret);

        byte[] wrapped = binder.wrap(id, AAD, secret);
        assertEquals("iv(12) || ciphertext || tag(16)", 12 + secret.length + 16, wrapped.length);
        assertArrayEquals(secret, binder.unwrap(id, AAD, wrapped));

        byte[] again = binder.wrap(id, AAD, secret);
        assertFalse("a fresh IV for every wrap",
                Arrays.equals(Arrays.copyOf(wrapped, 12), Arrays.copyOf(again, 12)));
        assertArrayEquals(secret, binder.unwrap(id, AAD, again));

        // Empty AAD and empty plaintext are legal inputs.
        assertArrayEquals(new byte[0], binder.unwrap(id, new byte[0],
                binder.wrap(id, new byte[0], new byte[0])));
        assertTrue(binder.describe().startsWith("pkcs11:"));
        binder.destroy(id);
    }

    @Test
    public void authenticationFailuresAreUnwrapFailed() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        byte[] id = newKeyId();
        byte[] other = newKeyId();
        binder.generate(id);
        binder.generate(other);
        byte[] wrapped = binder.wrap(id, AAD, "root secret".getBytes(StandardCharsets.UTF_8));

        byte[] wrongAad = AAD.clone();
        wrongAad[wrongAad.length - 1] ^= 1;
        expect(KeyBinderException.Reason.UNWRAP_FAILED, () -> binder.unwrap(id, wrongAad, wrapped));
        for (int position : new int[] {0, 11, 12, wrapped.length - 17, wrapped.length - 1}) {
            byte[] tampered = wrapped.clone();
            tampered[position] ^= 0x40;
            expect(KeyBinderException.Reason.UNWRAP_FAILED,
                    () -> binder.unwrap(id, AAD, tampered));
        }
        expect(KeyBinderException.Reason.UNWRAP_FAILED,
                () -> binder.unwrap(id, AAD, Arrays.copyOf(wrapped, 27)));
        expect(KeyBinderException.Reason.UNWRAP_FAILED,
                () -> binder.unwrap(other, AAD, wrapped));
        // The original still opens: nothing above changed the key.
        assertArrayEquals("root secret".getBytes(StandardCharsets.UTF_8),
                binder.unwrap(id, AAD, wrapped));
        binder.destroy(id);
        binder.destroy(other);
    }

    @Test
    public void keysAreNotExtractable() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        byte[] id = newKeyId();
        binder.generate(id);
        SecretKey key = binder.key(Pkcs11KeyBinder.alias(id));
        byte[] encoded;
        try {
            encoded = key.getEncoded();
        } catch (RuntimeException refused) {
            encoded = null;
        }
        assertNull("the key value must not be readable", encoded);
        // SunPKCS11 describes the object's attributes as read back from the token.
        String described = key.toString();
        assertTrue(described, described.contains("token object"));
        assertTrue(described, described.contains(", sensitive"));
        assertTrue(described, described.contains("unextractable"));
        binder.destroy(id);
    }

    @Test
    public void generateTwiceIsKeyExistsAndDestroyedKeysAreGone() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        byte[] id = newKeyId();
        binder.generate(id);
        expect(KeyBinderException.Reason.KEY_EXISTS, () -> binder.generate(id));
        byte[] wrapped = binder.wrap(id, AAD, new byte[32]);

        binder.destroy(id);
        expect(KeyBinderException.Reason.KEY_NOT_FOUND, () -> binder.unwrap(id, AAD, wrapped));
        expect(KeyBinderException.Reason.KEY_NOT_FOUND, () -> binder.wrap(id, AAD, new byte[1]));
        expect(KeyBinderException.Reason.KEY_NOT_FOUND, () -> binder.destroy(id));
        expect(KeyBinderException.Reason.KEY_NOT_FOUND,
                () -> binder.unwrap(newKeyId(), AAD, wrapped));
    }

    @Test
    public void anotherTokenDoesNotSeeTheKey() throws Exception {
        byte[] id = newKeyId();
        TestEnv.mainBinder().generate(id);
        byte[] wrapped = TestEnv.mainBinder().wrap(id, AAD, new byte[32]);
        expect(KeyBinderException.Reason.KEY_NOT_FOUND,
                () -> TestEnv.otherBinder().unwrap(id, AAD, wrapped));
        TestEnv.mainBinder().destroy(id);
    }

    @Test
    public void concurrentWrapsFromEightThreads() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        byte[] id = newKeyId();
        binder.generate(id);
        List<Throwable> failures = new CopyOnWriteArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            Thread thread = new Thread(() -> {
                try {
                    for (int i = 0; i < 20; i++) {
                        byte[] secret = new byte[32];
                        RANDOM.nextBytes(secret);
                        if (!Arrays.equals(secret,
                                binder.unwrap(id, AAD, binder.wrap(id, AAD, secret)))) {
                            throw new AssertionError("round trip mismatch");
                        }
                    }
                } catch (Throwable e) {
                    failures.add(e);
                }
            });
            thread.start();
            threads.add(thread);
        }
        for (Thread thread : threads) {
            thread.join(60_000);
        }
        assertTrue("failures: " + failures, failures.isEmpty());
        binder.destroy(id);
    }

    @Test
    public void pinIsCheckedZeroedAndOneBinderPerSlot() throws Exception {
        String module = TestEnv.pkcs11Library();
        long slot = TestEnv.slot("tchap.pkcs11.spareSlot");
        char[] wrong = "not-the-pin".toCharArray();
        try {
            Pkcs11KeyBinder.open(module, slot, wrong).close();
            fail("a wrong PIN was accepted");
        } catch (KeyBinderException e) {
            assertEquals(KeyBinderException.Reason.HARDWARE, e.getReason());
            assertTrue(e.getMessage(), e.getMessage().contains("wrong PIN"));
        }
        assertArrayEquals("the PIN is zeroed", new char[wrong.length], wrong);

        char[] pin = TestEnv.secret("tchap.pkcs11.sparePin").toCharArray();
        Pkcs11KeyBinder binder = Pkcs11KeyBinder.open(module, slot, pin);
        assertArrayEquals("the PIN is zeroed", new char[pin.length], pin);
        try {
            // Logged in already: a second binder could not check its PIN, so it is refused.
            Pkcs11KeyBinder.open(module, slot, "anything".toCharArray()).close();
            fail("a second binder on a logged-in slot was opened");
        } catch (KeyBinderException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("already"));
        }
        byte[] id = newKeyId();
        binder.generate(id);
        binder.close();
        binder.close(); // idempotent
        expect(KeyBinderException.Reason.HARDWARE, () -> binder.wrap(id, AAD, new byte[1]));

        // After logout the PIN is checked again, and the key is still on the token.
        try {
            Pkcs11KeyBinder.open(module, slot, "still-wrong".toCharArray()).close();
            fail("a wrong PIN was accepted after logout");
        } catch (KeyBinderException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("wrong PIN"));
        }
        try (Pkcs11KeyBinder reopened = Pkcs11KeyBinder.open(module, slot,
                TestEnv.secret("tchap.pkcs11.sparePin").toCharArray())) {
            byte[] secret = "persisted".getBytes(StandardCharsets.UTF_8);
            assertArrayEquals(secret, reopened.unwrap(id, AAD, reopened.wrap(id, AAD, secret)));
            reopened.destroy(id);
        }
    }

    @Test
    public void badArgumentsAreRefused() throws Exception {
        Pkcs11KeyBinder binder = TestEnv.mainBinder();
        expect(KeyBinderException.Reason.HARDWARE, () -> binder.generate(new byte[0]));
        expect(KeyBinderException.Reason.HARDWARE, () -> binder.wrap(null, AAD, new byte[1]));
        try {
            Pkcs11KeyBinder.open("/tmp/x\nslot = 0", 0, new char[] {'1'});
            fail("a module path with a newline was accepted");
        } catch (IllegalArgumentException expected) {
            // no configuration injection
        }
    }
}
