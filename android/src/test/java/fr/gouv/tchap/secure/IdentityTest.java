package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Collections;
import java.util.List;
import java.util.Locale;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Tchap identity through the Java API (issue 19) on the real library, Synapse and Sydent: tina
 * logs in by her work e-mail, finds sam in the directory (his name and ministry parsed), resolves
 * his address by the hashed lookup and invites him by it, opens a direct chat with him once;
 * uma's account expired before the run: her client locks; victor logs his other device out.
 * Users: sam (18), tina (19), uma (20), victor (21), used by no other test class.
 */
public class IdentityTest {
    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static SecureClient open(String name) throws Exception {
        return SecureClient.open(TestEnv.identityConfig(), TestEnv.newDataDir(name),
                TestEnv.mainBinder());
    }

    private static String userId(TestEnv.User user) {
        return "@" + user.localpart + ":" + TestEnv.prop("tchap.serverName");
    }

    private static String expectFailure(ThrowingRunnable body) throws Exception {
        try {
            body.run();
        } catch (TchapSecureException e) {
            return e.getCode();
        }
        fail("no TchapSecureException");
        return null;
    }

    @FunctionalInterface
    private interface ThrowingRunnable {
        void run() throws Exception;
    }

    @Test
    public void emailLoginDirectoryLookupInviteByEmailAndDirectChat() throws Exception {
        TestEnv.User sam = TestEnv.users().get(18);
        TestEnv.User tina = TestEnv.users().get(19);
        String samMail = TestEnv.prop("tchap.samEmail");
        String tinaMail = TestEnv.prop("tchap.tinaEmail");
        try (SecureClient c = open("identity-tina")) {
            Session session = c.loginWithEmail(
                    " " + tinaMail.toUpperCase(Locale.ROOT) + " ", tina.password(), "jvm-tina");
            assertEquals(userId(tina), session.userId());

            List<DirectoryUser> found = c.searchDirectory(sam.localpart, 10);
            DirectoryUser entry = null;
            for (DirectoryUser u : found) {
                if (u.userId().equals(userId(sam))) {
                    entry = u;
                }
            }
            assertTrue("sam in " + found.size() + " results", entry != null);
            assertEquals("Sam Durand", entry.name().name());
            assertEquals("Ministère des Armées", entry.name().organisation());
            assertFalse(entry.name().isSuspicious());
            assertEquals("Sam Durand [Ministère des Armées]", entry.name().shown());

            assertEquals(userId(sam), c.lookupEmail(samMail));
            String unknown = "nobody-" + sam.localpart + "@armees.gouv.fr";
            assertNull(c.lookupEmail(unknown));
            assertEquals("invalid_argument", expectFailure(() -> c.lookupEmail("not an address")));

            String room = c.createRoom("Cabinet");
            assertEquals(userId(sam), c.inviteByEmail(room, samMail));
            assertEquals(TchapSecureException.UNKNOWN_ADDRESS,
                    expectFailure(() -> c.inviteByEmail(room, unknown)));
            c.syncOnce(0);
            Member invited = null;
            for (Member m : c.members(room)) {
                if (m.userId().equals(userId(sam))) {
                    invited = m;
                }
            }
            assertTrue(invited != null);
            assertEquals("invite", invited.membership());
            assertEquals("Ministère des Armées", invited.name().organisation());

            String[] direct = c.openDirectRoom(userId(sam));
            assertEquals("true", direct[1]);
            assertNotEquals(room, direct[0]);
            String[] again = c.openDirectRoom(userId(sam));
            assertEquals(direct[0], again[0]);
            assertEquals("false", again[1]);
            assertNull(c.accountLock());
            assertTrue(c.resume());
        }
    }

    @Test
    public void anExpiredAccountLocksTheClient() throws Exception {
        TestEnv.User uma = TestEnv.users().get(20);
        try (SecureClient c = open("identity-uma")) {
            // The login itself goes through; the first request of the session finds the
            // account expired and locks the client.
            assertEquals(TchapSecureException.ACCOUNT_EXPIRED,
                    expectFailure(() -> c.login(uma.localpart, uma.password(), "jvm-uma")));
            assertEquals("expired", c.accountLock());
            assertEquals(TchapSecureException.ACCOUNT_EXPIRED,
                    expectFailure(() -> c.syncOnce(0)));
            assertEquals(TchapSecureException.ACCOUNT_EXPIRED,
                    expectFailure(() -> c.messages("!any:" + TestEnv.prop("tchap.serverName"), 5)));
            assertEquals(TchapSecureException.ACCOUNT_EXPIRED,
                    expectFailure(() -> c.members("!any:" + TestEnv.prop("tchap.serverName"))));
            // Still expired: no resumption. The renewal request is taken from an expired
            // account (uma has no address on file: the server mails nothing); still locked.
            assertFalse(c.resume());
            c.requestRenewal();
            assertEquals("expired", c.accountLock());
        }
    }

    @Test
    public void loggingOutAnotherDeviceRemovesIt() throws Exception {
        TestEnv.User victor = TestEnv.users().get(21);
        try (SecureClient c = open("identity-victor")) {
            c.login(victor.localpart, victor.password(), "jvm-victor");
            List<OwnDevice> devices = c.ownDevices();
            assertTrue("the registration's device and this one: " + devices.size(),
                    devices.size() >= 2);
            String current = null;
            String other = null;
            for (OwnDevice d : devices) {
                if (d.isCurrent()) {
                    current = d.deviceId();
                } else {
                    other = d.deviceId();
                }
            }
            assertTrue(current != null && other != null);
            String otherId = other;
            assertEquals("password_required",
                    expectFailure(() -> c.logOutDevices(Collections.singletonList(otherId), null)));
            byte[] password = victor.password();
            c.logOutDevices(Collections.singletonList(otherId), password);
            for (byte b : password) {
                assertEquals("the password array is zeroed", 0, b);
            }
            for (OwnDevice d : c.ownDevices()) {
                assertNotEquals(otherId, d.deviceId());
            }
            String ours = current;
            assertEquals("invalid_argument", expectFailure(
                    () -> c.logOutDevices(Collections.singletonList(ours), victor.password())));
        }
    }

    /**
     * Victor's phone syncs in the background; from his other device he logs the phone out (as
     * after a theft): the phone's sync thread finds its session revoked and, under the default
     * {@code on_account_revoked: shred}, crypto-shreds the data directory before telling the
     * app ({@code account_shredded}); the handle then answers {@code wiped}.
     */
    @Test
    public void aRevokedSessionIsShreddedByTheSyncThread() throws Exception {
        TestEnv.User victor = TestEnv.users().get(21);
        java.io.File phoneDir = TestEnv.newDataDir("identity-victor-phone");
        try (SecureClient phone = SecureClient.open(TestEnv.identityConfig(), phoneDir,
                    TestEnv.mainBinder());
                SecureClient laptop = open("identity-victor-laptop")) {
            String phoneDevice =
                    phone.login(victor.localpart, victor.password(), "jvm-victor-phone")
                            .deviceId();
            laptop.login(victor.localpart, victor.password(), "jvm-victor-laptop");
            java.util.concurrent.BlockingQueue<String> states =
                    new java.util.concurrent.LinkedBlockingQueue<>();
            phone.startSync(new Listener() {
                @Override
                public void onMessage(String roomId, String eventId, String sender,
                        String senderDisplayName, String body, String trust) {}

                @Override
                public void onSecurityEvent(String kind, String roomId, String userId,
                        String detail) {}

                @Override
                public void onSyncState(String state, String errorCode) {
                    states.add(state + ":" + errorCode);
                }
            });
            assertTrue(java.nio.file.Files.exists(phoneDir.toPath().resolve("vault.bin")));
            laptop.logOutDevices(Collections.singletonList(phoneDevice), victor.password());
            String last = null;
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (System.nanoTime() < deadline) {
                String state = states.poll(1, java.util.concurrent.TimeUnit.SECONDS);
                if (state != null && state.startsWith("failed:")) {
                    last = state;
                    break;
                }
            }
            assertEquals("failed:account_shredded", last);
            String[] left = phoneDir.list();
            assertTrue("nothing left in the data directory: " + java.util.Arrays.toString(left),
                    left == null || left.length == 0);
            assertEquals("wiped", expectFailure(phone::accountLock));
        }
    }
}
