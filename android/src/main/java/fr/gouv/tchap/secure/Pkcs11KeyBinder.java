package fr.gouv.tchap.secure;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.AuthProvider;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyStore;
import java.security.Provider;
import java.security.ProviderException;
import java.security.SecureRandom;
import java.security.Security;
import java.security.UnrecoverableKeyException;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.regex.Pattern;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import javax.security.auth.login.LoginException;

/**
 * A {@link KeyBinder} on a PKCS#11 token through the JDK's {@code SunPKCS11} provider (hosts:
 * SoftHSM2 in the tests, smartcards or HSMs elsewhere). It makes the same JCA calls as the
 * Android binder — {@code KeyGenerator}, {@code KeyStore}, {@code Cipher("AES/GCM/NoPadding")}
 * — so the host tests exercise the logic the phone runs, on a real token.
 *
 * <h2>Which token</h2>
 *
 * {@code SunPKCS11} selects a token by PKCS#11 <em>slot id</em> ({@code slot}) or by position in
 * the slot list ({@code slotListIndex}); it has no token-label setting and exposes no token
 * information through its public API, so a label cannot be matched cleanly from Java. The
 * caller therefore gives the slot id, as its provisioning recorded it (e.g.
 * {@code pkcs11-tool --list-slots}). For SoftHSM2 the slot id is derived from the token's
 * serial number, so it is stable for the life of the token. Should the slot hold another token
 * than intended, nothing leaks: its keys are not ours ({@code KEY_NOT_FOUND}) and the vault
 * refuses to open.
 *
 * <h2>The key on the token</h2>
 *
 * Each key is generated <em>inside</em> the token ({@code C_GenerateKey(CKM_AES_KEY_GEN)}, 256
 * bits), as a persistent token object labelled with the alias (lowercase hex of the key id, the
 * {@code KeyStore} alias), with the attributes of the native PKCS#11 backend:
 * {@code CKA_TOKEN}, {@code CKA_PRIVATE}, {@code CKA_SENSITIVE} true; {@code CKA_EXTRACTABLE}
 * false; {@code CKA_ENCRYPT}/{@code CKA_DECRYPT} only ({@code CKA_WRAP}, {@code CKA_UNWRAP},
 * {@code CKA_SIGN}, {@code CKA_VERIFY}, {@code CKA_DERIVE} false); {@code CKA_MODIFIABLE} and
 * {@code CKA_COPYABLE} false. These go in the provider configuration as an
 * {@code attributes(generate, CKO_SECRET_KEY, CKK_AES)} template. The label has to be in that
 * template too — storing an unlabelled key through {@code KeyStore.setEntry} would make
 * {@code SunPKCS11} <em>copy</em> it ({@code C_CopyObject}), leaving an orphan object and
 * requiring {@code CKA_COPYABLE}/{@code CKA_MODIFIABLE} true — so each generation uses a
 * short-lived provider instance whose template carries that key's label. Login state is
 * per application and token, so that instance works in the session this binder logged in.
 *
 * <h2>AES-GCM</h2>
 *
 * {@code wrap} draws a fresh 12-byte IV from {@link SecureRandom} for every call, authenticates
 * the AAD, and returns {@code iv || ciphertext || tag(16)}; {@code unwrap} is the inverse and
 * maps a failed tag check ({@link AEADBadTagException}) to {@code UNWRAP_FAILED}.
 *
 * <h2>PIN</h2>
 *
 * The PIN arrives as a {@code char[]} and is zeroed by {@link #open} once the login is done
 * (successful or not). One binder per slot per process: PKCS#11 login state belongs to the
 * process, so a second login on a token this process is logged in to could not check its PIN;
 * {@link #open} refuses it until the first binder is {@linkplain #close() closed}.
 */
public final class Pkcs11KeyBinder implements KeyBinder, AutoCloseable {
    /** GCM nonce length, bytes. */
    static final int IV_LENGTH = 12;
    /** GCM tag length, bits. */
    static final int TAG_BITS = 128;

    /** Characters allowed in the module path that goes into the provider configuration. */
    private static final Pattern SAFE_PATH = Pattern.compile("/[A-Za-z0-9/._+-]+");

    /** Slots (module + slot id) with an open binder in this process. */
    private static final Set<String> OPEN_SLOTS = new HashSet<>();

    private static final SecureRandom RANDOM = new SecureRandom();

    private final String baseConfig;
    private final Provider provider;
    private final KeyStore keyStore;
    private final String slotKey;
    private final String description;
    private boolean closed;

    private Pkcs11KeyBinder(String baseConfig, Provider provider, KeyStore keyStore,
            String slotKey, String description) {
        this.baseConfig = baseConfig;
        this.provider = provider;
        this.keyStore = keyStore;
        this.slotKey = slotKey;
        this.description = description;
    }

    /**
     * Configures {@code SunPKCS11} for {@code slotId} of the PKCS#11 module and logs in.
     *
     * @param modulePath absolute path of the PKCS#11 library, e.g.
     *     {@code /usr/lib/softhsm/libsofthsm2.so}
     * @param slotId the PKCS#11 slot id of the token (0 to 2^31-1: SunPKCS11 reads an int)
     * @param pin the user PIN; zeroed before this method returns or throws
     * @throws KeyBinderException {@code HARDWARE}: wrong PIN, no such slot, module not
     *     loadable, or the slot already has an open binder in this process
     */
    public static Pkcs11KeyBinder open(String modulePath, long slotId, char[] pin)
            throws KeyBinderException {
        try {
            if (pin == null) {
                throw new IllegalArgumentException("pin is null");
            }
            if (modulePath == null || !SAFE_PATH.matcher(modulePath).matches()) {
                // The path is written into the provider configuration: no room for injection.
                throw new IllegalArgumentException(
                        "module path must be absolute and made of [A-Za-z0-9/._+-]");
            }
            if (slotId < 0 || slotId > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("slot id out of SunPKCS11's range: " + slotId);
            }
            String slotKey = modulePath + "#" + slotId;
            synchronized (OPEN_SLOTS) {
                if (OPEN_SLOTS.contains(slotKey)) {
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "slot " + slotId + " already has an open binder in this process");
                }
                String baseConfig = "name = TchapSecure-slot-" + slotId + "\n"
                        + "library = " + modulePath + "\n"
                        + "slot = " + slotId + "\n";
                Provider provider = configure(baseConfig);
                KeyStore keyStore;
                try {
                    keyStore = KeyStore.getInstance("PKCS11", provider);
                    keyStore.load(null, pin);
                } catch (IOException e) {
                    if (e.getCause() instanceof UnrecoverableKeyException) {
                        throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                                "token login failed: wrong PIN", e);
                    }
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "token login failed", e);
                } catch (GeneralSecurityException | ProviderException e) {
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "PKCS#11 key store unavailable", e);
                }
                OPEN_SLOTS.add(slotKey);
                return new Pkcs11KeyBinder(baseConfig, provider, keyStore, slotKey,
                        "pkcs11:sunpkcs11 slot " + slotId);
            }
        } finally {
            if (pin != null) {
                Arrays.fill(pin, '\0');
            }
        }
    }

    private static Provider configure(String config) throws KeyBinderException {
        Provider prototype = Security.getProvider("SunPKCS11");
        if (prototype == null) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "the SunPKCS11 provider is not available in this JVM");
        }
        try {
            return prototype.configure("--" + config);
        } catch (RuntimeException e) {
            // InvalidParameterException / ProviderException: module or slot unusable.
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "cannot configure SunPKCS11: " + e.getMessage(), e);
        }
    }

    @Override
    public String describe() {
        return description;
    }

    @Override
    public synchronized void generate(byte[] keyId) throws KeyBinderException {
        String alias = alias(keyId);
        requireOpen();
        try {
            keyStore.load(null, null); // refresh the alias map from the token
            if (keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_EXISTS,
                        "a key with this id exists");
            }
            KeyGenerator generator = KeyGenerator.getInstance("AES", configure(baseConfig
                    + generateTemplate(alias)));
            generator.init(256);
            generator.generateKey();
            keyStore.load(null, null);
            if (!keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "the generated key is not in the key store");
            }
        } catch (IOException | GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key generation failed", e);
        }
    }

    /** The {@code attributes(generate, …)} template of a KEK labelled {@code alias}. */
    private static String generateTemplate(String alias) {
        return "attributes(generate, CKO_SECRET_KEY, CKK_AES) = {\n"
                + "  CKA_TOKEN = true\n"
                + "  CKA_PRIVATE = true\n"
                + "  CKA_SENSITIVE = true\n"
                + "  CKA_EXTRACTABLE = false\n"
                + "  CKA_ENCRYPT = true\n"
                + "  CKA_DECRYPT = true\n"
                + "  CKA_WRAP = false\n"
                + "  CKA_UNWRAP = false\n"
                + "  CKA_SIGN = false\n"
                + "  CKA_VERIFY = false\n"
                + "  CKA_DERIVE = false\n"
                + "  CKA_MODIFIABLE = false\n"
                + "  CKA_COPYABLE = false\n"
                + "  CKA_LABEL = 0h" + hex(alias.getBytes(StandardCharsets.US_ASCII)) + "\n"
                + "}\n";
    }

    @Override
    public synchronized byte[] wrap(byte[] keyId, byte[] aad, byte[] plaintext)
            throws KeyBinderException {
        if (aad == null || plaintext == null) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "aad and plaintext are required");
        }
        SecretKey key = key(alias(keyId));
        byte[] iv = new byte[IV_LENGTH];
        RANDOM.nextBytes(iv);
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding", provider);
            cipher.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(TAG_BITS, iv));
            cipher.updateAAD(aad);
            byte[] sealed = cipher.doFinal(plaintext);
            if (sealed.length != plaintext.length + TAG_BITS / 8) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "unexpected AES-GCM output length");
            }
            byte[] wrapped = new byte[IV_LENGTH + sealed.length];
            System.arraycopy(iv, 0, wrapped, 0, IV_LENGTH);
            System.arraycopy(sealed, 0, wrapped, IV_LENGTH, sealed.length);
            return wrapped;
        } catch (GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "AES-GCM encryption failed", e);
        }
    }

    @Override
    public synchronized byte[] unwrap(byte[] keyId, byte[] aad, byte[] wrapped)
            throws KeyBinderException {
        if (aad == null || wrapped == null) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "aad and wrapped are required");
        }
        SecretKey key = key(alias(keyId));
        if (wrapped.length < IV_LENGTH + TAG_BITS / 8) {
            throw new KeyBinderException(KeyBinderException.Reason.UNWRAP_FAILED,
                    "wrapped data too short");
        }
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding", provider);
            cipher.init(Cipher.DECRYPT_MODE, key,
                    new GCMParameterSpec(TAG_BITS, wrapped, 0, IV_LENGTH));
            cipher.updateAAD(aad);
            return cipher.doFinal(wrapped, IV_LENGTH, wrapped.length - IV_LENGTH);
        } catch (AEADBadTagException e) {
            // Wrong key, wrong AAD or tampered data: the only answer a tag check gives.
            throw new KeyBinderException(KeyBinderException.Reason.UNWRAP_FAILED,
                    "authentication failed", e);
        } catch (GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "AES-GCM decryption failed", e);
        }
    }

    @Override
    public synchronized void destroy(byte[] keyId) throws KeyBinderException {
        String alias = alias(keyId);
        requireOpen();
        try {
            keyStore.load(null, null);
            if (!keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_NOT_FOUND,
                        "no key with this id");
            }
            keyStore.deleteEntry(alias);
            keyStore.load(null, null);
            if (keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "the key is still on the token after deletion");
            }
        } catch (IOException | GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key destruction failed", e);
        }
    }

    /**
     * Logs out of the token and releases the slot for another binder. Idempotent. The binder
     * refuses every operation afterwards ({@code HARDWARE}).
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (provider instanceof AuthProvider) {
                ((AuthProvider) provider).logout();
            }
        } catch (LoginException e) {
            // Already logged out (e.g. the token was removed): nothing left to release.
        } finally {
            synchronized (OPEN_SLOTS) {
                OPEN_SLOTS.remove(slotKey);
            }
        }
    }

    /** The key object on the token (package-private: the tests check it is not extractable). */
    synchronized SecretKey key(String alias) throws KeyBinderException {
        requireOpen();
        try {
            Key key = keyStore.getKey(alias, null);
            if (key == null) {
                // Created by another binder or process since the last refresh?
                keyStore.load(null, null);
                key = keyStore.getKey(alias, null);
            }
            if (key == null) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_NOT_FOUND,
                        "no key with this id");
            }
            if (!(key instanceof SecretKey) || !"AES".equals(key.getAlgorithm())) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "the entry under this alias is not an AES secret key");
            }
            return (SecretKey) key;
        } catch (IOException | GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key lookup failed", e);
        }
    }

    private void requireOpen() throws KeyBinderException {
        if (closed) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE, "binder closed");
        }
    }

    /** The {@code KeyStore} alias and {@code CKA_LABEL} of a key: lowercase hex of its id. */
    static String alias(byte[] keyId) throws KeyBinderException {
        if (keyId == null || keyId.length == 0 || keyId.length > 64) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key id must be 1 to 64 bytes");
        }
        return hex(keyId);
    }

    private static String hex(byte[] bytes) {
        char[] digits = "0123456789abcdef".toCharArray();
        StringBuilder out = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            out.append(digits[(b >> 4) & 0xf]).append(digits[b & 0xf]);
        }
        return out.toString();
    }
}
