package fr.gouv.tchap.secure;

/**
 * A failure of the native library, with a stable error code (the typed errors of the core:
 * {@code pin_mismatch}, {@code wrong_pin}, {@code forbidden}, {@code unencrypted_room},
 * {@code panic}, …). Constructed by the native library.
 *
 * <p>A text message that could not go out now ({@link #SEND_QUEUED}) or was refused for good
 * ({@link #SEND_FAILED}) carries its {@linkplain #getLocalId() local id} — the
 * {@link Message#localId()} of its local echo in {@link SecureClient#messages}, and the id
 * {@link Listener#onSendState} reports later — and a {@linkplain #getReason() reason code}.
 */
public final class TchapSecureException extends Exception {
    private static final long serialVersionUID = 2L;

    /**
     * {@link #getCode()}: the message is kept in the queue (network down, server busy, earlier
     * messages of the room still waiting) and sent, in order, by a later sync;
     * {@link #getReason()} is the code of the failure that holds it back.
     */
    public static final String SEND_QUEUED = "send_queued";
    /**
     * {@link #getCode()}: the homeserver refused the message for good, or it was cancelled;
     * {@link #getReason()} is {@code forbidden}, {@code not_found}, {@code too_large},
     * {@code refused} or {@code left_room}.
     */
    public static final String SEND_FAILED = "send_failed";

    /**
     * {@link #getCode()}: the homeserver asks for the account password (user-interactive
     * authentication) and none was given: call again with it
     * ({@link SecureClient#bootstrapCrossSigning}).
     */
    public static final String PASSWORD_REQUIRED = "password_required";
    /**
     * {@link #getCode()}: the homeserver asks for user-interactive authentication by stages
     * other than the password (single sign-on, e-mail…), which this client does not do.
     */
    public static final String AUTH_UNSUPPORTED = "auth_unsupported";

    /**
     * {@link #getCode()}: the account has expired; the client is locked (nothing synced, sent
     * or shown) until it is renewed: {@link SecureClient#requestRenewal()}, then
     * {@link SecureClient#resume()}.
     */
    public static final String ACCOUNT_EXPIRED = "account_expired";
    /**
     * {@link #getCode()}: the account was deactivated or this device's session revoked; the
     * client is locked for good, or its data crypto-shredded (managed configuration
     * {@code on_account_revoked}).
     */
    public static final String ACCOUNT_REVOKED = "account_revoked";
    /** {@link #getCode()}: no user of the infrastructure has this e-mail address. */
    public static final String UNKNOWN_ADDRESS = "unknown_address";

    private final String code;
    private final String localId;
    private final String reason;

    public TchapSecureException(String code, String message) {
        this(code, message, null, null);
    }

    /** With the local id and reason of a {@link #SEND_QUEUED} / {@link #SEND_FAILED} message. */
    public TchapSecureException(String code, String message, String localId, String reason) {
        super(message);
        this.code = code;
        this.localId = localId;
        this.reason = reason;
    }

    /** The stable error code. */
    public String getCode() {
        return code;
    }

    /** For {@link #SEND_QUEUED} / {@link #SEND_FAILED}: the message's local id; else null. */
    public String getLocalId() {
        return localId;
    }

    /** For {@link #SEND_QUEUED} / {@link #SEND_FAILED}: the reason code; else null. */
    public String getReason() {
        return reason;
    }
}
