package fr.gouv.tchap.secure;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * {@link ConfigJson}: JSON escaping and the MDM value mapping, then the documents it builds
 * against the real native validator, and a login with one of them.
 */
public class ConfigJsonTest {
    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    private static Map<String, Object> map(Object... keyValues) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (int i = 0; i < keyValues.length; i += 2) {
            map.put((String) keyValues[i], keyValues[i + 1]);
        }
        return map;
    }

    /** What an MDM console delivers for this testbed: strings, bools, pins as one string. */
    static Map<String, Object> mdmRestrictions() throws Exception {
        String pem = new String(Files.readAllBytes(Paths.get(TestEnv.prop(
                "tchap.trustAnchorsPemFile"))), StandardCharsets.UTF_8);
        String[] pins = TestEnv.prop("tchap.spkiPins").split(",");
        Map<String, Object> values = new HashMap<>();
        values.put("homeserver_url", TestEnv.prop("tchap.homeserverUrl"));
        values.put("server_name", TestEnv.prop("tchap.serverName"));
        values.put("trust_anchors_pem", pem);
        // Pasted by an administrator: a comma, a line break, stray spaces.
        values.put("spki_pins_sha256", " " + pins[0] + " ,\r\n" + pins[1] + "\n");
        values.put("pins_expire_at", "2099-01-01T00:00:00Z");
        values.put("allowed_user_domain", TestEnv.prop("tchap.serverName"));
        values.put("strongbox_required", Boolean.FALSE);
        values.put("unlocked_device_required", Boolean.TRUE);
        values.put("wipe_command_nonce", "");
        return values;
    }

    @Test
    public void escapesEverythingJsonRequires() {
        String json = ConfigJson.toJson(map("k", "q\" b\\ n\n r\r t\t c\u0001 d\u007f é € 😀"
                + " \u2028"));
        assertEquals("{\"k\":\"q\\\" b\\\\ n\\n r\\r t\\t c\\u0001 d\\u007f é € 😀 \\u2028\"}",
                json);
        assertEquals("{\"a\\\"b\":true}", ConfigJson.toJson(map("a\"b", Boolean.TRUE)));
        try {
            ConfigJson.toJson(map("k", "lone \ud800 surrogate"));
            fail("an unpaired surrogate was accepted");
        } catch (IllegalArgumentException expected) {
            // no UTF-8 form
        }
        try {
            ConfigJson.toJson(map("k", "reversed \udc00\ud800"));
            fail("an unpaired low surrogate was accepted");
        } catch (IllegalArgumentException expected) {
            // no UTF-8 form
        }
    }

    @Test
    public void mapsMdmValues() {
        assertEquals(Arrays.asList("p1", "p2", "p3"),
                ConfigJson.splitPins(" p1, p2\np3\r\n,, \n"));
        String json = ConfigJson.toJson(map(
                "z_unknown", 5,
                "spki_pins_sha256", "a,b",
                "blank", "   ",
                "absent", null,
                "flag", Boolean.FALSE,
                "list", new String[] {"x", "y"},
                "homeserver_url", "https://h"));
        // Sorted keys, blank and null omitted, unknown keys kept for the validator to refuse.
        assertEquals("{\"flag\":false,\"homeserver_url\":\"https://h\",\"list\":[\"x\",\"y\"],"
                + "\"spki_pins_sha256\":[\"a\",\"b\"],\"z_unknown\":5}", json);
        assertArrayEquals(json.getBytes(StandardCharsets.UTF_8), ConfigJson.fromMap(map(
                "homeserver_url", "https://h", "list", Arrays.asList("x", "y"),
                "spki_pins_sha256", new String[] {" a", "b "}, "flag", false, "z_unknown", 5L,
                "blank", "")));
        try {
            ConfigJson.toJson(map("k", new Object()));
            fail("an unsupported value type was accepted");
        } catch (IllegalArgumentException expected) {
            // only String, Boolean, Integer/Long, String arrays
        }
    }

    /** The attachment cap, the one integer restriction: Integer → JSON number, absent → omitted. */
    @Test
    public void mapsTheAttachmentCap() throws Exception {
        assertEquals("{\"max_attachment_bytes\":10485760}",
                ConfigJson.toJson(map("max_attachment_bytes", 10_485_760)));
        assertEquals("{\"max_attachment_bytes\":2147483647}",
                ConfigJson.toJson(map("max_attachment_bytes", Integer.MAX_VALUE)));
        // Sorted among the other keys, like every key.
        assertEquals("{\"flag\":true,\"max_attachment_bytes\":1,\"server_name\":\"s\"}",
                ConfigJson.toJson(map("server_name", "s", "max_attachment_bytes", 1,
                        "flag", Boolean.TRUE)));
        // Absent or null: omitted, so the validator's default (100 MiB) applies.
        Map<String, Object> absent = mdmRestrictions();
        assertFalse(ConfigJson.toJson(absent).contains("max_attachment_bytes"));
        assertEquals("{\"server_name\":\"s\"}",
                ConfigJson.toJson(map("server_name", "s", "max_attachment_bytes", null)));
        // A wrong Java type is not converted: a String stays a JSON string (the validator
        // refuses it, see below), a Double is refused here.
        assertEquals("{\"max_attachment_bytes\":\"104857600\"}",
                ConfigJson.toJson(map("max_attachment_bytes", "104857600")));
        try {
            ConfigJson.toJson(map("max_attachment_bytes", 1.5e6));
            fail("a Double was accepted");
        } catch (IllegalArgumentException expected) {
            // only String, Boolean, Integer/Long, String arrays
        }
    }

    @Test
    public void theNativeValidatorTakesTheAttachmentCapInItsRange() throws Exception {
        for (int ok : new int[] {1, 10_485_760, 104_857_600, Integer.MAX_VALUE}) {
            Map<String, Object> values = mdmRestrictions();
            values.put("max_attachment_bytes", ok);
            SecureClient.checkConfig(ConfigJson.fromMap(values));
        }
        for (Object bad : new Object[] {0, -1, Integer.MIN_VALUE, 2_147_483_648L,
                "104857600", Boolean.TRUE}) {
            Map<String, Object> values = mdmRestrictions();
            values.put("max_attachment_bytes", bad);
            assertRefused(values);
        }
    }

    private static final String SCANNER_KEY_A = "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8";
    private static final String SCANNER_KEY_B = "7y6BLG/aMr8TA2KnaMnuHpqLVrRwAbal7xi1dPWZ+js";

    /**
     * The scanner keys are one MDM string split like the pins; the validator takes 1 to 8
     * distinct well-formed keys, and {@code checkConfig} names what weakens a valid document.
     */
    @Test
    public void scannerKeysAndPinWarningsReachTheAdministrator() throws Exception {
        assertEquals("{\"content_scanner_keys\":[\"" + SCANNER_KEY_A + "\",\"" + SCANNER_KEY_B
                + "\"]}", ConfigJson.toJson(map("content_scanner_keys",
                        " " + SCANNER_KEY_A + ",\r\n" + SCANNER_KEY_B + "\n")));

        Map<String, Object> values = mdmRestrictions();
        assertEquals(Arrays.asList("no_scanner_keys"),
                SecureClient.checkConfig(ConfigJson.fromMap(values)));
        values.put("content_scanner_keys", SCANNER_KEY_A + "\n" + SCANNER_KEY_B);
        assertEquals(Arrays.asList(), SecureClient.checkConfig(ConfigJson.fromMap(values)));

        for (String bad : new String[] {SCANNER_KEY_A + "," + SCANNER_KEY_A,
                SCANNER_KEY_A + "=", SCANNER_KEY_A.substring(1), "not a key"}) {
            Map<String, Object> refused = mdmRestrictions();
            refused.put("content_scanner_keys", bad);
            assertRefused(refused);
        }

        // The root CA's own key pinned: valid, flagged; with the MDM switch on it stops
        // counting, leaving the server's pin alone (no backup).
        String[] pins = TestEnv.prop("tchap.spkiPins").split(",");
        values.put("spki_pins_sha256", TestEnv.prop("tchap.rootPin") + "," + pins[0]);
        assertEquals(Arrays.asList("anchor_pinned"),
                SecureClient.checkConfig(ConfigJson.fromMap(values)));
        values.put("require_leaf_or_intermediate_pin", Boolean.TRUE);
        assertEquals(Arrays.asList("no_backup_pin"),
                SecureClient.checkConfig(ConfigJson.fromMap(values)));
        values.put("spki_pins_sha256", TestEnv.prop("tchap.rootPin") + "," + pins[0] + ","
                + pins[1]);
        assertEquals(Arrays.asList(), SecureClient.checkConfig(ConfigJson.fromMap(values)));
        values.put("require_leaf_or_intermediate_pin", "true");
        assertRefused(values);
    }

    @Test
    public void mdmDocumentPassesTheNativeValidator() throws Exception {
        SecureClient.checkConfig(ConfigJson.fromMap(mdmRestrictions()));
    }

    @Test
    public void theNativeValidatorRefusesWhatItMust() throws Exception {
        Map<String, Object> misspelt = mdmRestrictions();
        misspelt.put("homeserver_ulr", "https://typo.example");
        assertRefused(misspelt);

        Map<String, Object> onePin = mdmRestrictions();
        onePin.put("spki_pins_sha256", TestEnv.prop("tchap.spkiPins").split(",")[0]);
        assertRefused(onePin);

        Map<String, Object> http = mdmRestrictions();
        http.put("homeserver_url", "http://localhost");
        assertRefused(http);

        Map<String, Object> noAnchors = mdmRestrictions();
        noAnchors.put("trust_anchors_pem", "  ");
        assertRefused(noAnchors);

        Map<String, Object> boolAsString = mdmRestrictions();
        boolAsString.put("strongbox_required", "true");
        assertRefused(boolAsString);

        Map<String, Object> integerAsString = mdmRestrictions();
        integerAsString.put("max_attachment_bytes", "104857600");
        assertRefused(integerAsString);

        Map<String, Object> integerOutOfRange = mdmRestrictions();
        integerOutOfRange.put("max_attachment_bytes", 0);
        assertRefused(integerOutOfRange);
    }

    private static void assertRefused(Map<String, Object> values) {
        try {
            SecureClient.checkConfig(ConfigJson.fromMap(values));
            fail("the validator accepted " + ConfigJson.toJson(values));
        } catch (TchapSecureException e) {
            assertEquals("config", e.getCode());
        }
    }

    @Test
    public void aClientOnTheMdmDocumentLogsIn() throws Exception {
        TestEnv.User carol = TestEnv.users().get(2);
        try (SecureClient c = SecureClient.open(ConfigJson.fromMap(mdmRestrictions()),
                TestEnv.newDataDir("mdm"), TestEnv.mainBinder())) {
            Session session = c.login(carol.localpart, carol.password(), "jvm-mdm");
            assertEquals(session.userId(), c.whoami());
            assertTrue(session.userId().endsWith(":" + TestEnv.prop("tchap.serverName")));
        }
    }
}
