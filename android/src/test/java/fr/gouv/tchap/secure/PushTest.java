package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Push registration through the Java API (issue 17): this device's pusher on the real Synapse,
 * pointed at the testbed's push gateway with {@code event_id_only}, listed, removed, and gone
 * after a wipe; refused without a configured gateway and for hostile ids. Judy is used by no
 * other test class.
 */
public class PushTest {
    private static final String APP_ID = "fr.gouv.tchap.secure.jvm";

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static SecureClient judy(byte[] config, String name) throws Exception {
        TestEnv.User judy = TestEnv.users().get(9);
        SecureClient c = SecureClient.open(config, TestEnv.newDataDir(name),
                TestEnv.mainBinder());
        try {
            c.login(judy.localpart, judy.password(), "jvm-" + name);
        } catch (TchapSecureException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    private static Pusher find(SecureClient c, String pushkey) throws TchapSecureException {
        for (Pusher p : c.pushers()) {
            if (p.pushkey().equals(pushkey)) {
                return p;
            }
        }
        return null;
    }

    @Test
    public void aPusherIsRegisteredListedRemovedAndGoneAfterAWipe() throws Exception {
        try (SecureClient other = judy(TestEnv.pushConfig(), "push-judy-other")) {
            SecureClient c = judy(TestEnv.pushConfig(), "push-judy");
            try {
                c.registerPusher(APP_ID, "pk-judy-1", "judy-phone");
                Pusher p = find(c, "pk-judy-1");
                assertNotNull("the homeserver lists the pusher", p);
                assertEquals(APP_ID, p.appId());
                assertEquals("http", p.kind());
                assertEquals(Pusher.EVENT_ID_ONLY, p.format());
                assertTrue(p.url(), p.url().endsWith("/_matrix/push/v1/notify"));
                assertTrue(p.isRegisteredHere());
                // Judy's other device sees it on the server, not as its own.
                Pusher seen = find(other, "pk-judy-1");
                assertNotNull(seen);
                assertFalse(seen.isRegisteredHere());

                assertEquals(1, c.unregisterPushers());
                assertNull("removed on the server", find(other, "pk-judy-1"));
                assertEquals(0, c.unregisterPushers());

                // Hostile or oversized ids: refused before any request.
                for (String[] bad : new String[][] {
                        {APP_ID, "pk\u001b[2J"}, {"", "pk"}, {APP_ID, ""},
                        {"a\nb", "pk"}}) {
                    try {
                        c.registerPusher(bad[0], bad[1], "judy-phone");
                        fail("registered " + bad[0] + " / " + bad[1]);
                    } catch (TchapSecureException e) {
                        assertEquals("invalid_argument", e.getCode());
                    }
                }

                c.registerPusher(APP_ID, "pk-judy-2", "judy-phone");
                assertNotNull(find(other, "pk-judy-2"));
                c.wipe();
                assertNull("the wipe removed the pusher", find(other, "pk-judy-2"));
            } finally {
                c.close();
            }
        }
    }

    @Test
    public void withoutAConfiguredGatewayNoPusherIsRegistered() throws Exception {
        try (SecureClient c = judy(TestEnv.config(), "push-judy-none")) {
            try {
                c.registerPusher(APP_ID, "pk-judy-none", "judy-phone");
                fail("registered a pusher without a push gateway in the configuration");
            } catch (TchapSecureException e) {
                assertEquals("invalid_argument", e.getCode());
            }
            assertNull(find(c, "pk-judy-none"));
        }
    }
}
