package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.HashSet;
import java.util.Set;
import org.junit.BeforeClass;
import org.junit.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * The platform settings the library's manifest imposes on the app: no backup or device
 * transfer, strict network security configuration, managed configuration declared.
 */
public class ManifestTest {
    private static final String NS = RestrictionsTest.ANDROID_NS;
    private static final String[] DOMAINS = {"root", "file", "database", "sharedpref",
        "external", "device_root", "device_file", "device_database", "device_sharedpref"};

    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    @Test
    public void applicationAttributesAndRestrictionsMetaData() throws Exception {
        Document manifest = RestrictionsTest.parse("src/main/AndroidManifest.xml");
        Element application = (Element) manifest.getElementsByTagName("application").item(0);
        assertEquals("false", application.getAttributeNS(NS, "allowBackup"));
        assertEquals("false", application.getAttributeNS(NS, "fullBackupContent"));
        assertEquals("@xml/data_extraction_rules",
                application.getAttributeNS(NS, "dataExtractionRules"));
        assertEquals("@xml/network_security_config",
                application.getAttributeNS(NS, "networkSecurityConfig"));
        NodeList metaData = application.getElementsByTagName("meta-data");
        boolean restrictions = false;
        for (int i = 0; i < metaData.getLength(); i++) {
            Element e = (Element) metaData.item(i);
            if ("android.content.APP_RESTRICTIONS".equals(e.getAttributeNS(NS, "name"))) {
                assertEquals("@xml/app_restrictions", e.getAttributeNS(NS, "resource"));
                restrictions = true;
            }
        }
        assertTrue("APP_RESTRICTIONS meta-data", restrictions);
    }

    @Test
    public void nothingGoesToCloudBackupOrDeviceTransfer() throws Exception {
        Document rules = RestrictionsTest.parse("src/main/res/xml/data_extraction_rules.xml");
        assertEquals(0, rules.getElementsByTagName("include").getLength());
        for (String section : new String[] {"cloud-backup", "device-transfer"}) {
            Element e = (Element) rules.getElementsByTagName(section).item(0);
            Set<String> excluded = new HashSet<>();
            NodeList excludes = e.getElementsByTagName("exclude");
            for (int i = 0; i < excludes.getLength(); i++) {
                Element x = (Element) excludes.item(i);
                assertEquals(".", x.getAttribute("path"));
                excluded.add(x.getAttribute("domain"));
            }
            for (String domain : DOMAINS) {
                assertTrue(section + " excludes " + domain, excluded.contains(domain));
            }
        }
    }

    @Test
    public void networkSecurityConfigIsStrict() throws Exception {
        Document config = RestrictionsTest.parse("src/main/res/xml/network_security_config.xml");
        assertEquals(0, config.getElementsByTagName("debug-overrides").getLength());
        assertEquals(0, config.getElementsByTagName("domain-config").getLength());
        Element base = (Element) config.getElementsByTagName("base-config").item(0);
        assertEquals("false", base.getAttribute("cleartextTrafficPermitted"));
        NodeList certificates = config.getElementsByTagName("certificates");
        assertEquals("one trust source", 1, certificates.getLength());
        assertEquals("system", ((Element) certificates.item(0)).getAttribute("src"));
    }
}
