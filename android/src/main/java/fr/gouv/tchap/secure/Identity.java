package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * A user's cross-signing identity as this client pinned it: the master key seen the first time
 * (trust on first use of the identity, not of each device), and how far it is trusted.
 * Immutable. Keys are unpadded base64 public keys.
 */
public final class Identity {
    /** {@link #state()}: the master key was pinned the first time this client saw it. */
    public static final String PINNED = "pinned";
    /**
     * {@link #state()}: verified interactively (SAS or QR), or our own identity whose keys
     * this device holds.
     */
    public static final String VERIFIED = "verified";
    /**
     * {@link #state()}: the server now shows another master key ({@link #changedMaster()}); no
     * room keys are shared with the user's devices until the identity is verified again.
     */
    public static final String CHANGED = "changed";

    private final String userId;
    private final String master;
    private final String selfSigning;
    private final String state;
    private final String changedMaster;

    Identity(String userId, String master, String selfSigning, String state,
            String changedMaster) {
        this.userId = Objects.requireNonNull(userId, "userId");
        this.master = Objects.requireNonNull(master, "master");
        this.selfSigning = selfSigning;
        this.state = Objects.requireNonNull(state, "state");
        this.changedMaster = changedMaster;
    }

    /**
     * From a native row {@code {userId, master, selfSigning|null, state,
     * changedMaster|null}}; a null row means no identity.
     */
    static Identity fromRow(String[] row) {
        if (row == null) {
            return null;
        }
        Rows.requireColumns(row, 5, "identity");
        return new Identity(
                Rows.required(row, 0, "identity", "userId"),
                Rows.required(row, 1, "identity", "master"),
                row[2],
                Rows.required(row, 3, "identity", "state"),
                row[4]);
    }

    /** The user this identity belongs to. */
    public String userId() {
        return userId;
    }

    /** The pinned master key. */
    public String master() {
        return master;
    }

    /** The self-signing key the pinned master key signed (the latest seen), or null. */
    public String selfSigning() {
        return selfSigning;
    }

    /** {@link #PINNED}, {@link #VERIFIED} or {@link #CHANGED}. */
    public String state() {
        return state;
    }

    public boolean isVerified() {
        return VERIFIED.equals(state);
    }

    public boolean isChanged() {
        return CHANGED.equals(state);
    }

    /** While {@link #CHANGED}: the other master key the server now shows; else null. */
    public String changedMaster() {
        return changedMaster;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Identity)) {
            return false;
        }
        Identity i = (Identity) o;
        return userId.equals(i.userId) && master.equals(i.master)
                && Objects.equals(selfSigning, i.selfSigning) && state.equals(i.state)
                && Objects.equals(changedMaster, i.changedMaster);
    }

    @Override
    public int hashCode() {
        return Objects.hash(userId, master, selfSigning, state, changedMaster);
    }

    @Override
    public String toString() {
        return "Identity{" + userId + ", master " + master + ", " + state
                + (changedMaster == null ? "" : ", server shows " + changedMaster) + "}";
    }
}
