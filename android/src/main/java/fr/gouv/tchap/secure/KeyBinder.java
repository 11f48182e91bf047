package fr.gouv.tchap.secure;

/**
 * The hardware key that wraps every local secret (DESIGN §2): a non-exportable AES-256-GCM
 * key-encryption key, in the Android Keystore (StrongBox or TEE) on the phone, in a PKCS#11
 * token on a host. The native vault calls it through the {@code KeyVault} trait.
 *
 * <p>Wrapped format: {@code iv (12 bytes) || ciphertext || tag (16 bytes)}, AES/GCM/NoPadding
 * with the given additional authenticated data.
 */
public interface KeyBinder {
    /** Short description for logs (no secrets), e.g. {@code "android-keystore:strongbox"}. */
    String describe();

    /** Creates a new non-exportable AES-256 key under {@code keyId}; KEY_EXISTS if present. */
    void generate(byte[] keyId) throws KeyBinderException;

    /** Encrypts {@code plaintext} with the key and a fresh random IV. */
    byte[] wrap(byte[] keyId, byte[] aad, byte[] plaintext) throws KeyBinderException;

    /** Inverse of {@link #wrap}; UNWRAP_FAILED on a wrong key, AAD or tampered input. */
    byte[] unwrap(byte[] keyId, byte[] aad, byte[] wrapped) throws KeyBinderException;

    /** Destroys the key in hardware (crypto-shredding); KEY_NOT_FOUND if absent. */
    void destroy(byte[] keyId) throws KeyBinderException;
}
