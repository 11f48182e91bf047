package fr.gouv.tchap.secure;

/**
 * A failure of the native library, with a stable error code (the typed errors of the core:
 * {@code pin_mismatch}, {@code wrong_pin}, {@code forbidden}, {@code unencrypted_room},
 * {@code panic}, …). Constructed by the native library.
 */
public final class TchapSecureException extends Exception {
    private static final long serialVersionUID = 1L;

    private final String code;

    public TchapSecureException(String code, String message) {
        super(message);
        this.code = code;
    }

    /** The stable error code. */
    public String getCode() {
        return code;
    }
}
