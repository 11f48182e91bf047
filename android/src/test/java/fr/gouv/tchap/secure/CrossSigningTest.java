package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Cross-signing through the Java API (issue 16): the identity login creates, an idempotent
 * bootstrap, another user pinning it and seeing the device signed by it, and a reset that needs
 * the account password.
 *
 * <p>Frank logs in once for the whole class (a second device of his would find the identity
 * already on the server and hold no keys); grace, the other user, gets a fresh client in each
 * test. Frank and grace are used by no other test class: the reset changes what other users
 * see of frank. Each test holds in any order (the reset keeps frank's device signed).
 */
public class CrossSigningTest {
    private static SecureClient frank;
    private static Session frankSession;
    /** Frank's status right after login. */
    private static CrossSigningStatus afterLogin;

    @BeforeClass
    public static void loginFrank() throws Exception {
        TestEnv.init();
        TestEnv.User user = TestEnv.users().get(5);
        frank = SecureClient.open(TestEnv.config(), TestEnv.newDataDir("xs-frank"),
                TestEnv.mainBinder());
        frankSession = frank.login(user.localpart, user.password(), "jvm-xs-frank");
        afterLogin = frank.crossSigningStatus();
    }

    @AfterClass
    public static void closeFrank() {
        if (frank != null) {
            frank.close();
        }
    }

    private static SecureClient openGrace(String name) throws Exception {
        return openGrace(TestEnv.newDataDir(name));
    }

    private static SecureClient openGrace(java.io.File dir) throws Exception {
        TestEnv.User grace = TestEnv.users().get(6);
        SecureClient g = SecureClient.open(TestEnv.config(), dir, TestEnv.mainBinder());
        try {
            g.login(grace.localpart, grace.password(), "jvm-" + dir.getParentFile().getName());
        } catch (TchapSecureException | RuntimeException e) {
            g.close();
            throw e;
        }
        return g;
    }

    /** Frank's current device as {@code viewer} sees it after a fresh key query. */
    private static Device frankDeviceSeenBy(SecureClient viewer) throws Exception {
        for (Device d : viewer.devices(frankSession.userId())) {
            if (d.deviceId().equals(frankSession.deviceId())) {
                return d;
            }
        }
        throw new AssertionError("frank's device " + frankSession.deviceId() + " not listed");
    }

    @Test
    public void loginCreatesPublishesAndSignsOurIdentity() throws Exception {
        assertNotNull("a master key after login", afterLogin.master());
        assertTrue("this device holds the private keys", afterLogin.hasPrivateKeys());
        assertTrue("this device is signed", afterLogin.isDeviceSigned());
        assertEquals(Identity.VERIFIED, afterLogin.identityState());

        CrossSigningStatus now = frank.crossSigningStatus();
        Identity own = frank.identity(frankSession.userId());
        assertNotNull("our own identity is pinned", own);
        assertEquals(frankSession.userId(), own.userId());
        assertEquals(now.master(), own.master());
        assertEquals(Identity.VERIFIED, own.state());
        assertTrue(own.isVerified());
        assertNull(own.changedMaster());
        assertNotNull("the self-signing key", own.selfSigning());
    }

    @Test
    public void bootstrapAgainKeepsTheSameIdentity() throws Exception {
        CrossSigningStatus before = frank.crossSigningStatus();
        CrossSigningStatus again = frank.bootstrapCrossSigning(null);
        assertEquals(before.master(), again.master());
        assertEquals(before, again);
        assertTrue(again.hasPrivateKeys());
        assertTrue(again.isDeviceSigned());
        assertEquals(before, frank.crossSigningStatus());
    }

    @Test
    public void anotherUserPinsTheIdentityAndSeesTheDeviceCrossSigned() throws Exception {
        String master = frank.crossSigningStatus().master();
        try (SecureClient g = openGrace("xs-grace-pin")) {
            assertNull("nothing pinned before a key query", g.identity(frankSession.userId()));

            Device device = frankDeviceSeenBy(g);
            assertEquals(Device.IDENTITY_PINNED, device.trust());
            assertTrue("signed by frank's self-signing key", device.isCrossSigned());
            assertEquals(Device.TOFU, device.state());
            assertFalse(device.isDeleted());

            Identity identity = g.identity(frankSession.userId());
            assertNotNull("frank's identity pinned by the key query", identity);
            assertEquals(frankSession.userId(), identity.userId());
            assertEquals(master, identity.master());
            assertEquals(Identity.PINNED, identity.state());
            assertFalse(identity.isVerified());
            assertFalse(identity.isChanged());
            assertNull(identity.changedMaster());
        }
    }

    @Test
    public void resetWithAWrongPasswordIsForbiddenChangesNothingAndZeroesIt() throws Exception {
        CrossSigningStatus before = frank.crossSigningStatus();
        byte[] wrong = "not frank's password".getBytes(StandardCharsets.UTF_8);
        try {
            frank.resetCrossSigning(wrong);
            fail("a reset with a wrong password succeeded");
        } catch (TchapSecureException e) {
            assertEquals("forbidden", e.getCode());
        }
        assertArrayEquals("the password is zeroed", new byte[wrong.length], wrong);
        assertEquals(before, frank.crossSigningStatus());
        assertEquals(before, frank.bootstrapCrossSigning(null));
    }

    @Test
    public void resetWithThePasswordReplacesTheIdentityOthersSeeItChanged() throws Exception {
        TestEnv.User user = TestEnv.users().get(5);
        java.io.File graceDir = TestEnv.newDataDir("xs-grace-reset");
        String before;
        CrossSigningStatus after;
        try (SecureClient g = openGrace(graceDir)) {
            before = frank.crossSigningStatus().master();
            assertEquals(Device.IDENTITY_PINNED, frankDeviceSeenBy(g).trust());

            byte[] password = user.password();
            after = frank.resetCrossSigning(password);
            assertArrayEquals("the password is zeroed", new byte[password.length], password);
            assertNotNull(after.master());
            assertNotEquals("a new master key", before, after.master());
            assertTrue("the device is signed by the new identity", after.isDeviceSigned());
            assertTrue(after.hasPrivateKeys());
            assertEquals(Identity.VERIFIED, after.identityState());
            assertEquals(after, frank.crossSigningStatus());

            // Grace pinned the old master key: the new one is a change, not a silent repin.
            Device device = frankDeviceSeenBy(g);
            assertEquals(Device.IDENTITY_CHANGED, device.trust());
            Identity identity = g.identity(frankSession.userId());
            assertNotNull(identity);
            assertEquals(Identity.CHANGED, identity.state());
            assertTrue(identity.isChanged());
            assertEquals(before, identity.master());
            assertEquals(after.master(), identity.changedMaster());

            // The default configuration requires a new verification: no acknowledgement.
            try {
                g.acknowledgeIdentityChange(frankSession.userId(), after.master());
                fail("acknowledged although the configuration does not allow it");
            } catch (TchapSecureException e) {
                assertEquals("identity_acknowledgement_not_allowed", e.getCode());
            }
        }
        // The same data directory under a configuration that allows acknowledging.
        byte[] allowing = TestEnv.configWith("\"allow_identity_acknowledgement\": true");
        try (SecureClient g = SecureClient.open(allowing, graceDir, TestEnv.mainBinder())) {
            try {
                g.acknowledgeIdentityChange(frankSession.userId(), before);
                fail("acknowledged a key other than the one shown");
            } catch (TchapSecureException e) {
                assertEquals("identity_changed_again", e.getCode());
            }
            Identity acknowledged =
                    g.acknowledgeIdentityChange(frankSession.userId(), after.master());
            assertEquals(Identity.PINNED, acknowledged.state());
            assertEquals(after.master(), acknowledged.master());
            assertNull(acknowledged.changedMaster());
            assertEquals(Device.IDENTITY_PINNED, frankDeviceSeenBy(g).trust());
            try {
                g.acknowledgeIdentityChange(frankSession.userId(), after.master());
                fail("acknowledged twice");
            } catch (TchapSecureException e) {
                assertEquals("identity_not_changed", e.getCode());
            }
        }
    }
}
