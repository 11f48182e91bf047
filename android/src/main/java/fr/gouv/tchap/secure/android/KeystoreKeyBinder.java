package fr.gouv.tchap.secure.android;

import android.os.Build;
import android.security.keystore.KeyGenParameterSpec;
import android.security.keystore.KeyInfo;
import android.security.keystore.KeyProperties;
import android.security.keystore.StrongBoxUnavailableException;

import fr.gouv.tchap.secure.KeyBinder;
import fr.gouv.tchap.secure.KeyBinderException;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.ProviderException;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.GCMParameterSpec;

/**
 * The phone's {@link KeyBinder}: a non-exportable AES-256-GCM key-encryption key in the Android
 * Keystore, in StrongBox when the device has one, else in the TEE (DESIGN §2). Android only
 * (not compiled on the host); its JCA logic mirrors {@code Pkcs11KeyBinder}, which the host
 * tests run on a real PKCS#11 token.
 *
 * <h2>The key</h2>
 *
 * Alias {@code "tchap-secure-kek-" + hex(keyId)}; purposes ENCRYPT|DECRYPT, block mode GCM, no
 * padding, 256 bits, {@code setRandomizedEncryptionRequired(true)}: the Keystore chooses every
 * IV itself (the caller cannot force one), and {@link #wrap} reads it back with
 * {@link Cipher#getIV()}. Output {@code iv(12) || ciphertext || tag(16)}.
 *
 * <ul>
 *   <li><b>StrongBox</b>: requested first ({@code setIsStrongBoxBacked(true)}). On
 *       {@link StrongBoxUnavailableException} the key is generated in the TEE, unless the
 *       managed configuration says {@code strongbox_required}, in which case generation fails.
 *       The level actually obtained is read back from {@link KeyInfo} and reported by
 *       {@link #describe()} and {@link #securityLevel()}. A key outside secure hardware is
 *       refused: it is deleted and generation fails (no software fallback, ever).
 *   <li><b>Unlocked device</b>: {@code setUnlockedDeviceRequired} from the managed
 *       configuration; while the device is locked every operation then fails
 *       ({@code HARDWARE}).
 *   <li><b>Attestation</b>: Android cannot attest a symmetric key — setting an attestation
 *       challenge on an AES key makes {@code generateKey()} throw
 *       {@code InvalidAlgorithmParameterException}. When an attestation challenge is given, a
 *       companion EC P-256 signing key {@code "tchap-secure-attest-" + hex(keyId)} is
 *       generated in the same security level with {@code setAttestationChallenge(challenge)}.
 *       Its certificate chain ({@link #attestationChain(byte[])}), verified by the server
 *       against Google's attestation roots, proves the device's Keystore at that level is
 *       genuine and shows the boot state, OS version and patch level; it does not prove
 *       anything about the AES key itself, whose security level is checked locally through
 *       {@link KeyInfo}. The attestation key is destroyed with the KEK.
 * </ul>
 *
 * On Android 12 (API 31) and later the security level is exact ({@code KeyInfo
 * .getSecurityLevel()}); on API 28–30 {@code KeyInfo} only says "secure hardware" — StrongBox
 * is then known for keys this object generated, and {@code strongbox_required} is enforced at
 * generation only.
 *
 * <p>Thread-safe: the native library may call it from any thread.
 */
public final class KeystoreKeyBinder implements KeyBinder {
    /** Alias prefix of the key-encryption keys. */
    public static final String KEK_ALIAS_PREFIX = "tchap-secure-kek-";
    /** Alias prefix of the companion attestation keys. */
    public static final String ATTESTATION_ALIAS_PREFIX = "tchap-secure-attest-";

    private static final String PROVIDER = "AndroidKeyStore";
    private static final String TRANSFORMATION = "AES/GCM/NoPadding";
    private static final int IV_LENGTH = 12;
    private static final int TAG_BITS = 128;
    /** Android refuses attestation challenges longer than this. */
    private static final int MAX_CHALLENGE = 128;

    /** Where a key lives. */
    public enum SecurityLevel {
        /** A dedicated secure element (StrongBox Keymaster/KeyMint). */
        STRONGBOX,
        /** The Trusted Execution Environment. */
        TRUSTED_ENVIRONMENT,
        /** Secure hardware, which of the two the platform does not say (API 28–30). */
        SECURE_HARDWARE,
        /** Not established (no key generated or used yet). */
        UNKNOWN
    }

    private final boolean strongboxRequired;
    private final boolean unlockedDeviceRequired;
    private final byte[] attestationChallenge;
    /** Checked security level per KEK alias (each key is checked once, on first use). */
    private final Map<String, SecurityLevel> checked = new ConcurrentHashMap<>();
    private volatile SecurityLevel lastLevel = SecurityLevel.UNKNOWN;

    /**
     * @param strongboxRequired managed configuration {@code strongbox_required}: no TEE fallback
     * @param unlockedDeviceRequired managed configuration {@code unlocked_device_required}
     * @param attestationChallenge the server's attestation challenge (1 to 128 bytes), or null
     *     for no attestation key
     */
    public KeystoreKeyBinder(boolean strongboxRequired, boolean unlockedDeviceRequired,
            byte[] attestationChallenge) {
        if (attestationChallenge != null
                && (attestationChallenge.length == 0
                        || attestationChallenge.length > MAX_CHALLENGE)) {
            throw new IllegalArgumentException("attestation challenge must be 1 to "
                    + MAX_CHALLENGE + " bytes");
        }
        this.strongboxRequired = strongboxRequired;
        this.unlockedDeviceRequired = unlockedDeviceRequired;
        this.attestationChallenge =
                attestationChallenge == null ? null : attestationChallenge.clone();
    }

    /** {@code android-keystore:strongbox}, {@code …:tee}, {@code …:secure-hardware} or {@code …:unknown}. */
    @Override
    public String describe() {
        switch (lastLevel) {
            case STRONGBOX:
                return "android-keystore:strongbox";
            case TRUSTED_ENVIRONMENT:
                return "android-keystore:tee";
            case SECURE_HARDWARE:
                return "android-keystore:secure-hardware";
            default:
                return "android-keystore:unknown";
        }
    }

    /** The security level of the last key generated or used (for the UI and the audit log). */
    public SecurityLevel securityLevel() {
        return lastLevel;
    }

    @Override
    public void generate(byte[] keyId) throws KeyBinderException {
        String alias = KEK_ALIAS_PREFIX + hex(keyId);
        try {
            KeyStore keyStore = keyStore();
            if (keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_EXISTS,
                        "a key with this id exists");
            }
            boolean strongBox = true;
            try {
                generateKek(alias, true);
            } catch (ProviderException e) {
                if (!isStrongBoxUnavailable(e)) {
                    throw e;
                }
                if (strongboxRequired) {
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "StrongBox is required by the managed configuration but this device"
                                    + " has none", e);
                }
                strongBox = false;
                generateKek(alias, false);
            }
            SecurityLevel level;
            try {
                level = levelOf(keyStore, alias, strongBox);
                if (strongboxRequired && level == SecurityLevel.TRUSTED_ENVIRONMENT) {
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "StrongBox required, key generated in the TEE");
                }
                if (attestationChallenge != null) {
                    generateAttestationKey(ATTESTATION_ALIAS_PREFIX + hex(keyId), strongBox);
                }
            } catch (KeyBinderException | GeneralSecurityException | ProviderException e) {
                // Never leave behind a key we refuse to use.
                deleteQuietly(keyStore, alias);
                deleteQuietly(keyStore, ATTESTATION_ALIAS_PREFIX + hex(keyId));
                throw e;
            }
            checked.put(alias, level);
            lastLevel = level;
        } catch (GeneralSecurityException | IOException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key generation failed: " + e.getClass().getSimpleName(), e);
        }
    }

    private void generateKek(String alias, boolean strongBox) throws GeneralSecurityException {
        KeyGenParameterSpec spec = new KeyGenParameterSpec.Builder(alias,
                KeyProperties.PURPOSE_ENCRYPT | KeyProperties.PURPOSE_DECRYPT)
                .setKeySize(256)
                .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
                .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
                .setRandomizedEncryptionRequired(true)
                .setUnlockedDeviceRequired(unlockedDeviceRequired)
                .setIsStrongBoxBacked(strongBox)
                .build();
        KeyGenerator generator = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, PROVIDER);
        generator.init(spec);
        generator.generateKey();
    }

    private void generateAttestationKey(String alias, boolean strongBox)
            throws GeneralSecurityException {
        KeyGenParameterSpec spec = new KeyGenParameterSpec.Builder(alias,
                KeyProperties.PURPOSE_SIGN)
                .setAlgorithmParameterSpec(new ECGenParameterSpec("secp256r1"))
                .setDigests(KeyProperties.DIGEST_SHA256)
                .setAttestationChallenge(attestationChallenge)
                .setIsStrongBoxBacked(strongBox)
                .build();
        KeyPairGenerator generator =
                KeyPairGenerator.getInstance(KeyProperties.KEY_ALGORITHM_EC, PROVIDER);
        generator.initialize(spec);
        generator.generateKeyPair();
    }

    /** StrongBoxUnavailableException, thrown directly or as the cause (seen on some devices). */
    private static boolean isStrongBoxUnavailable(ProviderException e) {
        return e instanceof StrongBoxUnavailableException
                || e.getCause() instanceof StrongBoxUnavailableException;
    }

    /**
     * The attestation certificate chain of the key {@code keyId} (leaf first), to record and
     * send to the server for verification; null if no attestation key exists for it.
     */
    public X509Certificate[] attestationChain(byte[] keyId) throws KeyBinderException {
        String alias = ATTESTATION_ALIAS_PREFIX + hex(keyId);
        try {
            Certificate[] chain = keyStore().getCertificateChain(alias);
            if (chain == null) {
                return null;
            }
            X509Certificate[] out = new X509Certificate[chain.length];
            for (int i = 0; i < chain.length; i++) {
                out[i] = (X509Certificate) chain[i];
            }
            return out;
        } catch (GeneralSecurityException | IOException | ProviderException
                | ClassCastException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "attestation chain unavailable", e);
        }
    }

    @Override
    public byte[] wrap(byte[] keyId, byte[] aad, byte[] plaintext) throws KeyBinderException {
        if (aad == null || plaintext == null) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "aad and plaintext are required");
        }
        SecretKey key = kek(keyId);
        try {
            Cipher cipher = Cipher.getInstance(TRANSFORMATION);
            // No parameters: with randomized encryption required the Keystore picks the IV.
            cipher.init(Cipher.ENCRYPT_MODE, key);
            cipher.updateAAD(aad);
            byte[] sealed = cipher.doFinal(plaintext);
            byte[] iv = cipher.getIV();
            if (iv == null || iv.length != IV_LENGTH
                    || sealed.length != plaintext.length + TAG_BITS / 8) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "unexpected AES-GCM IV or output length");
            }
            byte[] wrapped = new byte[IV_LENGTH + sealed.length];
            System.arraycopy(iv, 0, wrapped, 0, IV_LENGTH);
            System.arraycopy(sealed, 0, wrapped, IV_LENGTH, sealed.length);
            return wrapped;
        } catch (GeneralSecurityException | ProviderException e) {
            // Includes UserNotAuthenticatedException (device locked, unlocked_device_required)
            // and KeyPermanentlyInvalidatedException.
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "AES-GCM encryption failed: " + e.getClass().getSimpleName(), e);
        }
    }

    @Override
    public byte[] unwrap(byte[] keyId, byte[] aad, byte[] wrapped) throws KeyBinderException {
        if (aad == null || wrapped == null) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "aad and wrapped are required");
        }
        SecretKey key = kek(keyId);
        if (wrapped.length < IV_LENGTH + TAG_BITS / 8) {
            throw new KeyBinderException(KeyBinderException.Reason.UNWRAP_FAILED,
                    "wrapped data too short");
        }
        try {
            Cipher cipher = Cipher.getInstance(TRANSFORMATION);
            cipher.init(Cipher.DECRYPT_MODE, key,
                    new GCMParameterSpec(TAG_BITS, wrapped, 0, IV_LENGTH));
            cipher.updateAAD(aad);
            return cipher.doFinal(wrapped, IV_LENGTH, wrapped.length - IV_LENGTH);
        } catch (AEADBadTagException e) {
            throw new KeyBinderException(KeyBinderException.Reason.UNWRAP_FAILED,
                    "authentication failed", e);
        } catch (GeneralSecurityException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "AES-GCM decryption failed: " + e.getClass().getSimpleName(), e);
        }
    }

    @Override
    public void destroy(byte[] keyId) throws KeyBinderException {
        String alias = KEK_ALIAS_PREFIX + hex(keyId);
        try {
            KeyStore keyStore = keyStore();
            if (!keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_NOT_FOUND,
                        "no key with this id");
            }
            keyStore.deleteEntry(alias);
            checked.remove(alias);
            String attestation = ATTESTATION_ALIAS_PREFIX + hex(keyId);
            if (keyStore.containsAlias(attestation)) {
                keyStore.deleteEntry(attestation);
            }
            if (keyStore.containsAlias(alias)) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "the key is still in the Keystore after deletion");
            }
        } catch (GeneralSecurityException | IOException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key destruction failed", e);
        }
    }

    /** The KEK, its security level checked on first use. */
    private SecretKey kek(byte[] keyId) throws KeyBinderException {
        String alias = KEK_ALIAS_PREFIX + hex(keyId);
        try {
            KeyStore keyStore = keyStore();
            Key key = keyStore.getKey(alias, null);
            if (key == null) {
                throw new KeyBinderException(KeyBinderException.Reason.KEY_NOT_FOUND,
                        "no key with this id");
            }
            if (!(key instanceof SecretKey)) {
                throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                        "the entry under this alias is not a secret key");
            }
            SecurityLevel level = checked.get(alias);
            if (level == null) {
                level = levelOf(keyStore, alias, false);
                if (strongboxRequired && level == SecurityLevel.TRUSTED_ENVIRONMENT) {
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "StrongBox required by the managed configuration, key in the TEE");
                }
                checked.put(alias, level);
            }
            lastLevel = level;
            return (SecretKey) key;
        } catch (GeneralSecurityException | IOException | ProviderException e) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key lookup failed: " + e.getClass().getSimpleName(), e);
        }
    }

    /**
     * Where the key {@code alias} lives, from {@link KeyInfo}; refuses a key outside secure
     * hardware. {@code generatedInStrongBox}: this object just generated it with StrongBox
     * requested and obtained (used on API 28–30, where KeyInfo cannot tell).
     */
    private static SecurityLevel levelOf(KeyStore keyStore, String alias,
            boolean generatedInStrongBox) throws GeneralSecurityException, KeyBinderException {
        Key key = keyStore.getKey(alias, null);
        if (!(key instanceof SecretKey)) {
            throw new KeyBinderException(KeyBinderException.Reason.KEY_NOT_FOUND,
                    "no key with this id");
        }
        SecretKeyFactory factory = SecretKeyFactory.getInstance(key.getAlgorithm(), PROVIDER);
        KeyInfo info = (KeyInfo) factory.getKeySpec((SecretKey) key, KeyInfo.class);
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            switch (info.getSecurityLevel()) {
                case KeyProperties.SECURITY_LEVEL_STRONGBOX:
                    return SecurityLevel.STRONGBOX;
                case KeyProperties.SECURITY_LEVEL_TRUSTED_ENVIRONMENT:
                    return SecurityLevel.TRUSTED_ENVIRONMENT;
                case KeyProperties.SECURITY_LEVEL_UNKNOWN_SECURE:
                    return SecurityLevel.SECURE_HARDWARE;
                default:
                    throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                            "the key is not in secure hardware");
            }
        }
        if (!isInsideSecureHardware(info)) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "the key is not in secure hardware");
        }
        return generatedInStrongBox ? SecurityLevel.STRONGBOX : SecurityLevel.SECURE_HARDWARE;
    }

    @SuppressWarnings("deprecation") // The only API before 31; getSecurityLevel() replaces it.
    private static boolean isInsideSecureHardware(KeyInfo info) {
        return info.isInsideSecureHardware();
    }

    private static KeyStore keyStore() throws GeneralSecurityException, IOException {
        KeyStore keyStore = KeyStore.getInstance(PROVIDER);
        keyStore.load(null);
        return keyStore;
    }

    private static void deleteQuietly(KeyStore keyStore, String alias) {
        try {
            if (keyStore.containsAlias(alias)) {
                keyStore.deleteEntry(alias);
            }
        } catch (GeneralSecurityException | ProviderException e) {
            // Best effort while already failing; the original error is what matters.
        }
    }

    private static String hex(byte[] keyId) throws KeyBinderException {
        if (keyId == null || keyId.length == 0 || keyId.length > 64) {
            throw new KeyBinderException(KeyBinderException.Reason.HARDWARE,
                    "key id must be 1 to 64 bytes");
        }
        char[] digits = "0123456789abcdef".toCharArray();
        StringBuilder out = new StringBuilder(keyId.length * 2);
        for (byte b : keyId) {
            out.append(digits[(b >> 4) & 0xf]).append(digits[b & 0xf]);
        }
        return out.toString();
    }
}
