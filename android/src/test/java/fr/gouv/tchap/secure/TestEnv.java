package fr.gouv.tchap.secure;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * What the Rust driver ({@code tests/tests/jvm.rs}) prepared for the host JVM tests: the real
 * {@code libtchap_secure.so}, a running Synapse with pre-registered users, the client
 * configuration, SoftHSM2 tokens, a scratch directory.
 *
 * <p>Non-secret inputs are system properties ({@code tchap.lib}, {@code tchap.config},
 * {@code tchap.dataRoot}, {@code tchap.pkcs11.library}, {@code tchap.pkcs11.slot},
 * {@code tchap.pkcs11.otherSlot}, {@code tchap.pkcs11.spareSlot}, {@code tchap.androidDir},
 * {@code tchap.homeserverUrl}, {@code tchap.serverName}, {@code tchap.trustAnchorsPemFile},
 * {@code tchap.spkiPins}, and for attachments {@code tchap.scannerConfig} — the configuration
 * of a second, legacy-media Synapse behind the content scanner's front — and
 * {@code tchap.eicarFile}). The secrets — {@code tchap.users} ({@code localpart:password,…}),
 * {@code tchap.scannerUsers} (the same, on the scanner's homeserver),
 * {@code tchap.pkcs11.pin}, {@code tchap.pkcs11.otherPin}, {@code tchap.pkcs11.sparePin} — are
 * in a mode-0600 properties file named by {@code tchap.secretsFile}, never on the JVM's command
 * line (DESIGN §2: a PIN is never given on a command line, where {@code ps} shows it).
 *
 * <p>A missing input fails the test with a message saying how to run it: nothing is skipped.
 */
final class TestEnv {
    private static Properties secrets;
    private static Pkcs11KeyBinder mainBinder;
    private static Pkcs11KeyBinder otherBinder;

    private TestEnv() {}

    /** Loads the library (once) and the secrets file. Call first in every test class. */
    static synchronized void init() {
        if (secrets != null) {
            return;
        }
        SecureClient.loadLibrary(prop("tchap.lib"));
        Properties loaded = new Properties();
        try (InputStream in = Files.newInputStream(Paths.get(prop("tchap.secretsFile")))) {
            loaded.load(in);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read tchap.secretsFile", e);
        }
        secrets = loaded;
    }

    /** A required system property. */
    static String prop(String name) {
        String value = System.getProperty(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException("system property " + name + " is not set: run these"
                    + " tests through `cargo test -p tchap-secure-tests --test jvm`");
        }
        return value;
    }

    /** A required secret from the secrets file. */
    static synchronized String secret(String name) {
        init();
        String value = secrets.getProperty(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException("secret " + name + " missing from tchap.secretsFile");
        }
        return value;
    }

    /** The client configuration JSON the driver wrote (Synapse URL, run PKI anchors, pins). */
    static byte[] config() {
        try {
            return Files.readAllBytes(Paths.get(prop("tchap.config")));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read tchap.config", e);
        }
    }

    /**
     * The client configuration with more members, e.g. {@code "\"key\": true"} (JSON text
     * inserted before the closing brace).
     */
    static byte[] configWith(String members) {
        String json = new String(config(), java.nio.charset.StandardCharsets.UTF_8).trim();
        if (!json.endsWith("}")) {
            throw new IllegalStateException("tchap.config is not a JSON object");
        }
        String more = json.substring(0, json.length() - 1) + ", " + members + "}";
        return more.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    /** The client configuration with the testbed's push gateway as {@code push_gateway_url}. */
    static byte[] pushConfig() {
        try {
            return Files.readAllBytes(Paths.get(prop("tchap.pushConfig")));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read tchap.pushConfig", e);
        }
    }

    /** The configuration of the homeserver behind the content scanner (attachments). */
    static byte[] scannerConfig() {
        try {
            return Files.readAllBytes(Paths.get(prop("tchap.scannerConfig")));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read tchap.scannerConfig", e);
        }
    }

    /** The EICAR test file (the scanner's ClamAV refuses it). */
    static File eicarFile() {
        return new File(prop("tchap.eicarFile"));
    }

    /** A fresh, empty directory under the run's scratch root (a data directory not yet made). */
    static File newDataDir(String prefix) throws IOException {
        Path parent = Files.createTempDirectory(Paths.get(prop("tchap.dataRoot")), prefix + "-");
        return parent.resolve("data").toFile();
    }

    static String pkcs11Library() {
        return prop("tchap.pkcs11.library");
    }

    static long slot(String property) {
        return Long.parseLong(prop(property));
    }

    /** The binder on the main token, shared by the tests (one login per token per process). */
    static synchronized Pkcs11KeyBinder mainBinder() throws KeyBinderException {
        init();
        if (mainBinder == null) {
            mainBinder = Pkcs11KeyBinder.open(pkcs11Library(), slot("tchap.pkcs11.slot"),
                    secret("tchap.pkcs11.pin").toCharArray());
        }
        return mainBinder;
    }

    /** The binder on the other token (holds none of the main token's keys). */
    static synchronized Pkcs11KeyBinder otherBinder() throws KeyBinderException {
        init();
        if (otherBinder == null) {
            otherBinder = Pkcs11KeyBinder.open(pkcs11Library(), slot("tchap.pkcs11.otherSlot"),
                    secret("tchap.pkcs11.otherPin").toCharArray());
        }
        return otherBinder;
    }

    /** A pre-registered user of the run's Synapse. */
    static final class User {
        final String localpart;
        private final String password;

        User(String localpart, String password) {
            this.localpart = localpart;
            this.password = password;
        }

        /** A fresh copy of the password (login zeroes the array it is given). */
        byte[] password() {
            return password.getBytes(StandardCharsets.UTF_8);
        }
    }

    /**
     * The pre-registered users (twenty-two: alice, bob, carol for the older tests, dave and
     * erin for {@code TimelineTest}, frank and grace for {@code CrossSigningTest}, whose reset
     * of frank's identity must not change what the other tests see, henry and iris for
     * {@code VerificationTest}, each logged in on two devices, judy for {@code PushTest}, kate
     * and leo for {@code NotificationTest}, mike and nina for {@code PersistentSyncTest}, olga
     * and paul for {@code RelationsTest}, quinn and rose for {@code ReceiptsRetentionTest};
     * sam, tina, uma and victor for {@code IdentityTest}), in the driver's order.
     */
    static List<User> users() {
        return usersOf("tchap.users", 22);
    }

    /**
     * The configuration with the identity server ({@code identity_server_url}) and
     * {@code known_organisations: ["Ministère des Armées"]} (IdentityTest).
     */
    static byte[] identityConfig() {
        try {
            return Files.readAllBytes(Paths.get(prop("tchap.identityConfig")));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read tchap.identityConfig", e);
        }
    }

    /** The two users registered on the content scanner's homeserver. */
    static List<User> scannerUsers() {
        return usersOf("tchap.scannerUsers", 2);
    }

    private static List<User> usersOf(String name, int needed) {
        List<User> users = new ArrayList<>();
        for (String pair : secret(name).split(",")) {
            int colon = pair.indexOf(':');
            if (colon <= 0) {
                throw new IllegalStateException(name + ": malformed entry");
            }
            users.add(new User(pair.substring(0, colon), pair.substring(colon + 1)));
        }
        if (users.size() < needed) {
            throw new IllegalStateException(name + ": need at least " + needed + " users");
        }
        return Collections.unmodifiableList(users);
    }

    /** Polls {@code probe} every 100 ms until it returns non-null (or true), or fails. */
    static <T> T await(String what, long timeoutSeconds, Callable<T> probe) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        while (true) {
            T value = probe.call();
            if (value != null && !Boolean.FALSE.equals(value)) {
                return value;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeoutSeconds + " s waiting for "
                        + what);
            }
            Thread.sleep(100);
        }
    }

    /**
     * Makes {@code c}, just logged in as {@code user}, hold its user's cross-signing identity:
     * the JVM run reuses users across test classes, and a device whose earlier sibling (now
     * gone) created the identity would be unsigned and get no room keys (issue 16). Resetting
     * the identity with the password is what a member whose only phone was lost does.
     */
    static void holdIdentity(SecureClient c, User user) throws Exception {
        if (!c.crossSigningStatus().isDeviceSigned()) {
            CrossSigningStatus status = c.resetCrossSigning(user.password());
            if (!status.isDeviceSigned() || !status.hasPrivateKeys()) {
                throw new AssertionError("identity reset did not sign the device: " + status);
            }
        }
    }

    /**
     * Verifies {@code second} from {@code first}, two devices of the same user, by SAS over
     * to-device messages, as a member does with a new phone: afterwards {@code second} is
     * signed by the identity and gets room keys from whoever trusts it.
     */
    static void verifyOwnDevice(SecureClient first, SecureClient second, String ownUserId)
            throws Exception {
        first.syncOnce(0);
        second.syncOnce(0);
        String flow = first.requestVerification(ownUserId, null);
        await("the request on the second device", 60, () -> {
            second.syncOnce(0);
            return second.verification(flow);
        });
        second.acceptVerification(flow);
        await("ready", 60, () -> {
            first.syncOnce(0);
            return Verification.READY.equals(first.verification(flow).state());
        });
        first.startSas(flow);
        await("the emoji on both devices", 60, () -> {
            second.syncOnce(0);
            first.syncOnce(0);
            return !first.verification(flow).emoji().isEmpty()
                    && !second.verification(flow).emoji().isEmpty();
        });
        if (!first.verification(flow).emoji().equals(second.verification(flow).emoji())) {
            throw new AssertionError("the two devices show different emoji");
        }
        first.confirmSas(flow);
        second.confirmSas(flow);
        await("done on both devices", 60, () -> {
            second.syncOnce(0);
            first.syncOnce(0);
            return first.verification(flow).isDone() && second.verification(flow).isDone();
        });
    }
}
