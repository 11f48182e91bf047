package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.BeforeClass;
import org.junit.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * (f) {@code app_restrictions.xml} ↔ the native validator: the managed-configuration keys the
 * MDM can push are exactly the keys the library accepts (DESIGN §8), with the right types, and
 * every title and description exists in English and French.
 */
public class RestrictionsTest {
    static final String ANDROID_NS = "http://schemas.android.com/apk/res/android";

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    static Document parse(String relative) throws Exception {
        File file = new File(TestEnv.prop("tchap.androidDir"), relative);
        DocumentBuilderFactory factory = DocumentBuilderFactory.newInstance();
        factory.setNamespaceAware(true);
        factory.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        return factory.newDocumentBuilder().parse(file);
    }

    /** {@code name → text} of a {@code res/values*} strings file. */
    static Map<String, String> strings(String relative) throws Exception {
        Map<String, String> strings = new HashMap<>();
        NodeList nodes = parse(relative).getElementsByTagName("string");
        for (int i = 0; i < nodes.getLength(); i++) {
            Element e = (Element) nodes.item(i);
            strings.put(e.getAttribute("name"), e.getTextContent());
        }
        return strings;
    }

    /** key → restrictionType of every restriction. */
    static Map<String, Element> restrictions() throws Exception {
        Document doc = parse("src/main/res/xml/app_restrictions.xml");
        assertEquals("restrictions", doc.getDocumentElement().getTagName());
        Map<String, Element> out = new LinkedHashMap<>();
        NodeList nodes = doc.getElementsByTagName("restriction");
        for (int i = 0; i < nodes.getLength(); i++) {
            Element e = (Element) nodes.item(i);
            String key = e.getAttributeNS(ANDROID_NS, "key");
            assertFalse("restriction without android:key", key.isEmpty());
            assertTrue("nested restrictions are not expected",
                    e.getParentNode() == doc.getDocumentElement());
            assertEquals("duplicate restriction " + key, null, out.put(key, e));
        }
        return out;
    }

    @Test
    public void restrictionKeysAreExactlyTheValidatorKeys() throws Exception {
        Set<String> xmlKeys = restrictions().keySet();
        Set<String> nativeKeys = new HashSet<>(SecureClient.configKeys());
        assertEquals("configKeys() has no duplicates", SecureClient.configKeys().size(),
                nativeKeys.size());
        Set<String> onlyXml = new HashSet<>(xmlKeys);
        onlyXml.removeAll(nativeKeys);
        Set<String> onlyNative = new HashSet<>(nativeKeys);
        onlyNative.removeAll(xmlKeys);
        assertTrue("in app_restrictions.xml but unknown to the validator: " + onlyXml,
                onlyXml.isEmpty());
        assertTrue("accepted by the validator but missing from app_restrictions.xml: "
                + onlyNative, onlyNative.isEmpty());
    }

    @Test
    public void typesTitlesAndDescriptions() throws Exception {
        Map<String, String> english = strings("src/main/res/values/strings.xml");
        Map<String, String> french = strings("src/main/res/values-fr/strings.xml");
        // Every key not listed here is a string.
        Map<String, String> types = new HashMap<>();
        types.put("strongbox_required", "bool");
        types.put("unlocked_device_required", "bool");
        types.put("require_leaf_or_intermediate_pin", "bool");
        types.put("require_cross_signing", "bool");
        types.put("allow_identity_acknowledgement", "bool");
        types.put("redaction_reason_in_clear", "bool");
        types.put("max_attachment_bytes", "integer");
        types.put("max_message_lifetime_days", "integer");
        for (Map.Entry<String, Element> r : restrictions().entrySet()) {
            String key = r.getKey();
            Element e = r.getValue();
            String type = e.getAttributeNS(ANDROID_NS, "restrictionType");
            assertEquals("restrictionType of " + key, types.getOrDefault(key, "string"), type);
            if ("bool".equals(type)) {
                assertEquals("bool restrictions default to false: " + key, "false",
                        e.getAttributeNS(ANDROID_NS, "defaultValue"));
            }
            for (String attribute : new String[] {"title", "description"}) {
                String ref = e.getAttributeNS(ANDROID_NS, attribute);
                assertTrue(key + " " + attribute + " must be a string resource: " + ref,
                        ref.startsWith("@string/"));
                String name = ref.substring("@string/".length());
                assertNotNull("English " + name, english.get(name));
                assertNotNull("French " + name, french.get(name));
                assertFalse(english.get(name).trim().isEmpty());
                assertFalse(french.get(name).trim().isEmpty());
            }
        }
        assertEquals("same strings in both languages", english.keySet(), french.keySet());
    }

    /**
     * {@code max_attachment_bytes} is an Android {@code integer} restriction (32-bit, as the
     * validator's range) whose default shown in the MDM console is the validator's own default
     * when the key is absent (native {@code DEFAULT_MAX_ATTACHMENT_BYTES}, 100 MiB), and the
     * validator accepts that default as a JSON number.
     */
    @Test
    public void attachmentCapIsAnIntegerWithTheValidatorsDefault() throws Exception {
        Element e = restrictions().get("max_attachment_bytes");
        assertNotNull("max_attachment_bytes is in app_restrictions.xml", e);
        assertEquals("integer", e.getAttributeNS(ANDROID_NS, "restrictionType"));
        String defaultValue = e.getAttributeNS(ANDROID_NS, "defaultValue");
        assertEquals("default of max_attachment_bytes", String.valueOf(100 * 1024 * 1024),
                defaultValue);
        Map<String, Object> values = ConfigJsonTest.mdmRestrictions();
        values.put("max_attachment_bytes", Integer.valueOf(defaultValue));
        SecureClient.checkConfig(ConfigJson.fromMap(values));
    }

    /**
     * {@code max_message_lifetime_days} is an Android {@code integer} restriction with no
     * default: its absence means "no ceiling", which no integer says, so the console shows no
     * value of its own. The validator takes its range as Integers (1 to 3650) and refuses 0 and
     * 3651 naming the key.
     */
    @Test
    public void messageLifetimeCeilingIsAnIntegerWithoutDefault() throws Exception {
        Element e = restrictions().get("max_message_lifetime_days");
        assertNotNull("max_message_lifetime_days is in app_restrictions.xml", e);
        assertEquals("integer", e.getAttributeNS(ANDROID_NS, "restrictionType"));
        assertFalse("max_message_lifetime_days has no default (absent: no ceiling)",
                e.hasAttributeNS(ANDROID_NS, "defaultValue"));
        for (int days : new int[] {1, 3650}) {
            Map<String, Object> values = ConfigJsonTest.mdmRestrictions();
            values.put("max_message_lifetime_days", Integer.valueOf(days));
            SecureClient.checkConfig(ConfigJson.fromMap(values));
        }
        for (int days : new int[] {0, 3651}) {
            Map<String, Object> values = ConfigJsonTest.mdmRestrictions();
            values.put("max_message_lifetime_days", Integer.valueOf(days));
            try {
                SecureClient.checkConfig(ConfigJson.fromMap(values));
                fail("the validator accepted max_message_lifetime_days = " + days);
            } catch (TchapSecureException refused) {
                assertEquals("config", refused.getCode());
                assertTrue(refused.getMessage(),
                        refused.getMessage().contains("max_message_lifetime_days"));
            }
        }
    }

    /**
     * {@code read_receipts} is a string restriction whose default shown in the MDM console is
     * the validator's own ({@code private}); each of its values is accepted, any other refused.
     */
    @Test
    public void readReceiptsDefaultIsTheValidatorsDefault() throws Exception {
        Element e = restrictions().get("read_receipts");
        assertNotNull("read_receipts is in app_restrictions.xml", e);
        assertEquals("private", e.getAttributeNS(ANDROID_NS, "defaultValue"));
        for (String value : new String[] {"public", "private", "off"}) {
            Map<String, Object> values = ConfigJsonTest.mdmRestrictions();
            values.put("read_receipts", value);
            SecureClient.checkConfig(ConfigJson.fromMap(values));
        }
        Map<String, Object> values = ConfigJsonTest.mdmRestrictions();
        values.put("read_receipts", "none");
        try {
            SecureClient.checkConfig(ConfigJson.fromMap(values));
            fail("the validator accepted read_receipts = none");
        } catch (TchapSecureException refused) {
            assertEquals("config", refused.getCode());
            assertTrue(refused.getMessage(), refused.getMessage().contains("read_receipts"));
        }
    }
}
