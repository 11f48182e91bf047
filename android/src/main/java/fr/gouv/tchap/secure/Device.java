package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * One device of a user, after a fresh key query. Immutable.
 *
 * <p>Two things are known of it: its {@linkplain #state() pinning state} (its Ed25519 key as
 * first seen, trust on first use, or blocked after that key changed), and its
 * {@linkplain #trust() trust}, which also takes cross-signing into account: whether the
 * device is signed by its owner's cross-signing identity ({@link #isCrossSigned()}) and how
 * far that identity is trusted ({@link SecureClient#identity}).
 */
public final class Device {
    /**
     * {@link #state()}: the device's Ed25519 key is the one first seen (trust on first use).
     * Also a {@link #trust()} value: its owner has no cross-signing identity known here, the
     * device is trusted on first use only.
     */
    public static final String TOFU = "tofu";
    /**
     * {@link #state()}: the device's key changed after first use; nothing is shared with it.
     * Also a {@link #trust()} value.
     */
    public static final String BLOCKED = "blocked";

    /** {@link #trust()}: signed by its owner's identity, which is verified (or is ours). */
    public static final String VERIFIED = "verified";
    /**
     * {@link #trust()}: signed by its owner's identity, pinned on first sight but not verified
     * interactively.
     */
    public static final String IDENTITY_PINNED = "identity_pinned";
    /** {@link #trust()}: its owner has a cross-signing identity, which did not sign it. */
    public static final String UNSIGNED = "unsigned";
    /**
     * {@link #trust()}: its owner's master key changed ({@link Identity#CHANGED}); nothing is
     * shared until the identity is verified again.
     */
    public static final String IDENTITY_CHANGED = "identity_changed";
    /** {@link #trust()}: the device was removed from the account. */
    public static final String UNKNOWN = "unknown";

    private final String deviceId;
    private final String ed25519;
    private final String state;
    private final boolean deleted;
    private final String displayName;
    private final String trust;
    private final boolean crossSigned;

    Device(String deviceId, String ed25519, String state, boolean deleted, String displayName,
            String trust, boolean crossSigned) {
        this.deviceId = Objects.requireNonNull(deviceId, "deviceId");
        this.ed25519 = Objects.requireNonNull(ed25519, "ed25519");
        this.state = Objects.requireNonNull(state, "state");
        this.deleted = deleted;
        this.displayName = displayName;
        this.trust = Objects.requireNonNull(trust, "trust");
        this.crossSigned = crossSigned;
    }

    /**
     * From a native row {@code {deviceId, ed25519, state, deleted, displayName|null, trust,
     * crossSigned}}.
     */
    static Device fromRow(String[] row) {
        Rows.requireColumns(row, 7, "devices");
        return new Device(
                Rows.required(row, 0, "devices", "deviceId"),
                Rows.required(row, 1, "devices", "ed25519"),
                Rows.required(row, 2, "devices", "state"),
                Rows.bool(row, 3, "devices", "deleted"),
                row[4],
                Rows.required(row, 5, "devices", "trust"),
                Rows.bool(row, 6, "devices", "crossSigned"));
    }

    public String deviceId() {
        return deviceId;
    }

    /** The device's Ed25519 fingerprint key (unpadded base64), as pinned on first use. */
    public String ed25519() {
        return ed25519;
    }

    /** The pinning state: {@link #TOFU} or {@link #BLOCKED}. */
    public String state() {
        return state;
    }

    public boolean isBlocked() {
        return BLOCKED.equals(state);
    }

    /** Whether the device was removed from the account. */
    public boolean isDeleted() {
        return deleted;
    }

    /** The device's display name, or null. */
    public String displayName() {
        return displayName;
    }

    /**
     * The trust shown for the device and the messages it sends, first match wins:
     * {@link #BLOCKED}, {@link #UNKNOWN} (deleted), {@link #TOFU} (its owner has no
     * cross-signing identity known here), {@link #IDENTITY_CHANGED}, {@link #UNSIGNED},
     * {@link #VERIFIED}, {@link #IDENTITY_PINNED}.
     */
    public String trust() {
        return trust;
    }

    /**
     * Whether its keys carry a valid signature of its owner's self-signing key, itself signed
     * by the owner's pinned master key.
     */
    public boolean isCrossSigned() {
        return crossSigned;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Device)) {
            return false;
        }
        Device d = (Device) o;
        return deviceId.equals(d.deviceId) && ed25519.equals(d.ed25519) && state.equals(d.state)
                && deleted == d.deleted && Objects.equals(displayName, d.displayName)
                && trust.equals(d.trust) && crossSigned == d.crossSigned;
    }

    @Override
    public int hashCode() {
        return Objects.hash(deviceId, ed25519, state, deleted, displayName, trust, crossSigned);
    }

    @Override
    public String toString() {
        return "Device{" + deviceId + ", ed25519 " + ed25519 + ", " + state + ", trust " + trust
                + (crossSigned ? ", cross-signed" : "") + (deleted ? ", deleted" : "") + "}";
    }
}
