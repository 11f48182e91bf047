package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * Where our own cross-signing identity stands, as this device knows it (no network).
 * Immutable.
 *
 * <p>After a login that created the account's identity: {@link #master()} set,
 * {@link #hasPrivateKeys()}, {@link #isDeviceSigned()}, {@link #identityState()}
 * {@link Identity#VERIFIED}. A device that logged in to an account whose identity another
 * device created holds no private keys and is not signed until that device verifies it.
 */
public final class CrossSigningStatus {
    private final String master;
    private final boolean hasPrivateKeys;
    private final boolean deviceSigned;
    private final String identityState;

    CrossSigningStatus(String master, boolean hasPrivateKeys, boolean deviceSigned,
            String identityState) {
        this.master = master;
        this.hasPrivateKeys = hasPrivateKeys;
        this.deviceSigned = deviceSigned;
        this.identityState = identityState;
    }

    /** From a native row {@code {master|null, hasPrivateKeys, deviceSigned, identity|null}}. */
    static CrossSigningStatus fromRow(String[] row) {
        Rows.requireColumns(row, 4, "crossSigningStatus");
        return new CrossSigningStatus(
                row[0],
                Rows.bool(row, 1, "crossSigningStatus", "hasPrivateKeys"),
                Rows.bool(row, 2, "crossSigningStatus", "deviceSigned"),
                row[3]);
    }

    /**
     * Our identity's master key (unpadded base64): ours, or the one pinned from the server
     * when another device of ours created it; null if the account has none known here.
     */
    public String master() {
        return master;
    }

    /** Whether this device holds the identity's private keys (it created them). */
    public boolean hasPrivateKeys() {
        return hasPrivateKeys;
    }

    /** Whether this device's signature by the identity is on the server. */
    public boolean isDeviceSigned() {
        return deviceSigned;
    }

    /**
     * Trust in our own identity: {@link Identity#VERIFIED} when this device holds its keys or
     * verified it, {@link Identity#PINNED} or {@link Identity#CHANGED} otherwise; null if none
     * is pinned.
     */
    public String identityState() {
        return identityState;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof CrossSigningStatus)) {
            return false;
        }
        CrossSigningStatus s = (CrossSigningStatus) o;
        return Objects.equals(master, s.master) && hasPrivateKeys == s.hasPrivateKeys
                && deviceSigned == s.deviceSigned
                && Objects.equals(identityState, s.identityState);
    }

    @Override
    public int hashCode() {
        return Objects.hash(master, hasPrivateKeys, deviceSigned, identityState);
    }

    @Override
    public String toString() {
        return "CrossSigningStatus{master " + master + ", identity " + identityState
                + (hasPrivateKeys ? ", private keys here" : ", no private keys")
                + (deviceSigned ? ", device signed" : ", device not signed") + "}";
    }
}
