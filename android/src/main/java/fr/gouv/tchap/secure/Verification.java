package fr.gouv.tchap.secure;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * An interactive key verification flow (SAS emoji, or QR codes) with another user, or with
 * another device of our own user, as this client sees it at one moment. Immutable: each call
 * of {@link SecureClient} returns a new snapshot.
 *
 * <p>The flow, who calls what when ({@link SecureClient#requestVerification}):
 *
 * <ol>
 *   <li>Device A calls {@code requestVerification(userId, roomIdOrNull)}: state
 *       {@link #REQUESTED} on A. Device B receives it in a sync ({@link
 *       Listener#onVerification}, {@link SecureClient#verifications()}): state
 *       {@link #RECEIVED}. B's user accepts ({@code acceptVerification}) or declines
 *       ({@code cancelVerification}).
 *   <li>Both become {@link #READY}. One side calls {@code startSas}; after a sync or two each
 *       side shows the same {@link #emoji()} (and {@link #decimals()}), state
 *       {@link #SAS_KEYS_EXCHANGED}.
 *   <li>Each user compares them with the other screen and calls {@code confirmSas} (match) or
 *       {@code sasMismatch} (no match: {@link #CANCELLED} with
 *       {@link #CANCEL_MISMATCHED_SAS} on both sides, nothing trusted).
 *   <li>Once both confirmed and the other side's proof checked, the flow is {@link #DONE}:
 *       the library has signed and uploaded what was verified ({@link #verified()}) before
 *       reporting it.
 * </ol>
 *
 * Any side may cancel at any time; a flow left idle times out ({@code m.timeout}). Keep
 * syncing (the background sync, or {@link SecureClient#syncOnce}) while a flow runs: the other
 * side's steps arrive through it.
 */
public final class Verification {
    /** {@link #state()}: we sent the request, waiting for the other side to accept. */
    public static final String REQUESTED = "requested";
    /** {@link #state()}: we received the request: accept or cancel it. */
    public static final String RECEIVED = "received";
    /** {@link #state()}: both sides are ready: start SAS, or show / scan a QR code. */
    public static final String READY = "ready";
    /** {@link #state()}: we started SAS, waiting for the other side to accept it. */
    public static final String SAS_WAITING_FOR_ACCEPT = "sas_waiting_for_accept";
    /** {@link #state()}: SAS accepted, the keys being exchanged. */
    public static final String SAS_WAITING_FOR_KEY = "sas_waiting_for_key";
    /** {@link #state()}: the emoji and numbers are there to compare: confirm or refuse them. */
    public static final String SAS_KEYS_EXCHANGED = "sas_keys_exchanged";
    /** {@link #state()}: we confirmed the emoji, waiting for the other side. */
    public static final String SAS_CONFIRMED = "sas_confirmed";
    /** {@link #state()}: both confirmed, waiting for the other side's done. */
    public static final String SAS_WAITING_FOR_DONE = "sas_waiting_for_done";
    /** {@link #state()}: the other side scanned our QR code: confirm it did. */
    public static final String QR_SCANNED = "qr_scanned";
    /** {@link #state()}: we confirmed the scan, waiting for the other side's done. */
    public static final String QR_CONFIRMED = "qr_confirmed";
    /** {@link #state()}: we scanned the other side's code, waiting for its done. */
    public static final String QR_RECIPROCATED = "qr_reciprocated";
    /** {@link #state()}: verified; {@link #verified()} says what. */
    public static final String DONE = "done";
    /** {@link #state()}: cancelled ({@link #cancelCode()}, {@link #cancelReason()}). */
    public static final String CANCELLED = "cancelled";

    /** {@link #cancelCode()}: a user said the emoji (or numbers) did not match. */
    public static final String CANCEL_MISMATCHED_SAS = "m.mismatched_sas";
    /** {@link #cancelCode()}: a user cancelled or declined. */
    public static final String CANCEL_USER = "m.user";
    /** {@link #cancelCode()}: the flow timed out. */
    public static final String CANCEL_TIMEOUT = "m.timeout";

    /** {@link #theirMethods()}: short authentication string (emoji). */
    public static final String METHOD_SAS = "m.sas.v1";
    /** {@link #theirMethods()}: can show a QR code. */
    public static final String METHOD_QR_SHOW = "m.qr_code.show.v1";
    /** {@link #theirMethods()}: can scan a QR code. */
    public static final String METHOD_QR_SCAN = "m.qr_code.scan.v1";
    /** {@link #theirMethods()}: can answer a scanned QR code. */
    public static final String METHOD_RECIPROCATE = "m.reciprocate.v1";

    /**
     * Columns of a native row before its lists: {@code {flowId, userId, deviceId|null,
     * roomId|null, weRequested, state, decimal1|null, decimal2|null, decimal3|null,
     * cancelCode|null, cancelReason|null, cancelledByUs|null, error|null, methodCount,
     * emojiCount|null, verifiedCount}}, then the methods, the emoji as {@code symbol,
     * description} pairs, and what was verified (the native row test reads this constant).
     */
    static final int FIXED_COLUMNS = 16;
    private static final String TABLE = "verification";

    private final String flowId;
    private final String userId;
    private final String deviceId;
    private final String roomId;
    private final boolean weRequested;
    private final String state;
    private final List<String> theirMethods;
    private final List<SasEmoji> emoji;
    private final int[] decimals;
    private final String cancelCode;
    private final String cancelReason;
    private final Boolean cancelledByUs;
    private final List<String> verified;
    private final String error;

    private Verification(String[] row, List<String> theirMethods, List<SasEmoji> emoji,
            int[] decimals, Boolean cancelledByUs, List<String> verified) {
        this.flowId = Rows.required(row, 0, TABLE, "flowId");
        this.userId = Rows.required(row, 1, TABLE, "userId");
        this.deviceId = row[2];
        this.roomId = row[3];
        this.weRequested = Rows.bool(row, 4, TABLE, "weRequested");
        this.state = Rows.required(row, 5, TABLE, "state");
        this.decimals = decimals;
        this.cancelCode = row[9];
        this.cancelReason = row[10];
        this.cancelledByUs = cancelledByUs;
        this.error = row[12];
        this.theirMethods = theirMethods;
        this.emoji = emoji;
        this.verified = verified;
    }

    /** From a native row (see {@link #FIXED_COLUMNS}); a null row means no such flow. */
    static Verification fromRow(String[] row) {
        if (row == null) {
            return null;
        }
        if (row.length < FIXED_COLUMNS) {
            Rows.requireColumns(row, FIXED_COLUMNS, TABLE);
        }
        int methodCount = Rows.count(row, 13, TABLE, "methodCount");
        int emojiCount = row[14] == null ? 0 : Rows.count(row, 14, TABLE, "emojiCount");
        int verifiedCount = Rows.count(row, 15, TABLE, "verifiedCount");
        Rows.requireColumns(row, FIXED_COLUMNS + methodCount + 2 * emojiCount + verifiedCount,
                TABLE);
        int next = FIXED_COLUMNS;
        List<String> methods = new ArrayList<>(methodCount);
        for (int i = 0; i < methodCount; i++) {
            methods.add(Rows.required(row, next++, TABLE, "method"));
        }
        List<SasEmoji> emoji = new ArrayList<>(emojiCount);
        for (int i = 0; i < emojiCount; i++) {
            String symbol = Rows.required(row, next++, TABLE, "emoji symbol");
            emoji.add(new SasEmoji(symbol, Rows.required(row, next++, TABLE, "emoji description")));
        }
        List<String> verified = new ArrayList<>(verifiedCount);
        for (int i = 0; i < verifiedCount; i++) {
            verified.add(Rows.required(row, next++, TABLE, "verified"));
        }
        int[] decimals = null;
        if (row[6] != null) {
            decimals = new int[] {
                Rows.count(row, 6, TABLE, "decimal"),
                Rows.count(row, 7, TABLE, "decimal"),
                Rows.count(row, 8, TABLE, "decimal"),
            };
        }
        Boolean byUs = row[11] == null ? null : Rows.bool(row, 11, TABLE, "cancelledByUs");
        return new Verification(row, Collections.unmodifiableList(methods),
                Collections.unmodifiableList(emoji), decimals, byUs,
                Collections.unmodifiableList(verified));
    }

    /** The flow id, to pass to the {@link SecureClient} verification methods. */
    public String flowId() {
        return flowId;
    }

    /** The other user (our own user id when verifying another device of ours). */
    public String userId() {
        return userId;
    }

    /** The other device, once known (null while a request we sent is unanswered). */
    public String deviceId() {
        return deviceId;
    }

    /** The room of an in-room flow, or null for a to-device one. */
    public String roomId() {
        return roomId;
    }

    /** Whether we sent the request (else we received it). */
    public boolean weRequested() {
        return weRequested;
    }

    /** One of the state constants of this class. */
    public String state() {
        return state;
    }

    public boolean isDone() {
        return DONE.equals(state);
    }

    public boolean isCancelled() {
        return CANCELLED.equals(state);
    }

    /** The methods the other side offered ({@link #METHOD_SAS}, …); unmodifiable. */
    public List<String> theirMethods() {
        return theirMethods;
    }

    /**
     * The seven emoji to compare with the other screen, once the SAS keys are exchanged;
     * empty before (and in a QR flow). Unmodifiable.
     */
    public List<SasEmoji> emoji() {
        return emoji;
    }

    /**
     * The SAS as three numbers (1000 to 9191), for screens that cannot show emoji, once the
     * keys are exchanged; else null. A copy.
     */
    public int[] decimals() {
        return decimals == null ? null : decimals.clone();
    }

    /** If cancelled: the cancel code ({@link #CANCEL_MISMATCHED_SAS}, …); else null. */
    public String cancelCode() {
        return cancelCode;
    }

    /** If cancelled: the reason text sent or received with it; else null. */
    public String cancelReason() {
        return cancelReason;
    }

    /** If cancelled: whether we cancelled (else the other side did); else null. */
    public Boolean cancelledByUs() {
        return cancelledByUs;
    }

    /**
     * Once done, what the flow verified: {@code "device USER DEVICE"} and/or
     * {@code "master USER KEY"}; empty before. Unmodifiable.
     */
    public List<String> verified() {
        return verified;
    }

    /**
     * If we cancelled because of what the other side sent: what was wrong with it (the event
     * and field at fault); else null.
     */
    public String error() {
        return error;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Verification)) {
            return false;
        }
        Verification v = (Verification) o;
        return flowId.equals(v.flowId) && userId.equals(v.userId)
                && Objects.equals(deviceId, v.deviceId) && Objects.equals(roomId, v.roomId)
                && weRequested == v.weRequested && state.equals(v.state)
                && theirMethods.equals(v.theirMethods) && emoji.equals(v.emoji)
                && Arrays.equals(decimals, v.decimals)
                && Objects.equals(cancelCode, v.cancelCode)
                && Objects.equals(cancelReason, v.cancelReason)
                && Objects.equals(cancelledByUs, v.cancelledByUs)
                && verified.equals(v.verified) && Objects.equals(error, v.error);
    }

    @Override
    public int hashCode() {
        return Objects.hash(flowId, userId, deviceId, roomId, weRequested, state, theirMethods,
                emoji, Arrays.hashCode(decimals), cancelCode, cancelReason, cancelledByUs,
                verified, error);
    }

    @Override
    public String toString() {
        return "Verification{" + flowId + ", " + userId
                + (deviceId == null ? "" : " " + deviceId)
                + (roomId == null ? ", to-device" : ", in " + roomId)
                + (weRequested ? ", ours" : ", theirs") + ", " + state
                + (cancelCode == null ? "" : ", " + cancelCode
                        + (Boolean.TRUE.equals(cancelledByUs) ? " by us" : " by them"))
                + (verified.isEmpty() ? "" : ", verified " + verified) + "}";
    }
}
