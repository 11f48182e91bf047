package fr.gouv.tchap.secure;

/** A failure of a {@link KeyBinder}, with a reason the native vault maps to its typed errors. */
public final class KeyBinderException extends Exception {
    private static final long serialVersionUID = 1L;

    /** Why the operation failed. */
    public enum Reason {
        /** {@code generate}: a key with that id exists. */
        KEY_EXISTS,
        /** No key with that id (never created, or destroyed). */
        KEY_NOT_FOUND,
        /** Authentication failed: wrong key, wrong AAD, or tampered input. */
        UNWRAP_FAILED,
        /** Any other failure of the keystore or token. */
        HARDWARE
    }

    private final Reason reason;

    public KeyBinderException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    public KeyBinderException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    /** Called by the native library (by name) to map the failure. */
    public String reasonName() {
        return reason.name();
    }

    public Reason getReason() {
        return reason;
    }
}
