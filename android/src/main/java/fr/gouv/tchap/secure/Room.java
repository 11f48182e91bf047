package fr.gouv.tchap.secure;

import java.util.Objects;

/** A joined or invited room, as the local store knows it after the last sync. Immutable. */
public final class Room {
    /** Megolm, the only room encryption algorithm the client creates or accepts. */
    public static final String MEGOLM = "m.megolm.v1.aes-sha2";

    private final String roomId;
    private final String membership;
    private final String name;
    private final String encryption;
    private final int joinedMembers;
    private final int invitedMembers;

    Room(String roomId, String membership, String name, String encryption, int joinedMembers,
            int invitedMembers) {
        this.roomId = Objects.requireNonNull(roomId, "roomId");
        this.membership = Objects.requireNonNull(membership, "membership");
        this.name = name;
        this.encryption = encryption;
        this.joinedMembers = joinedMembers;
        this.invitedMembers = invitedMembers;
    }

    /**
     * From a native row {@code {roomId, membership, name|null, encryption|null, joinedMembers,
     * invitedMembers}}.
     */
    static Room fromRow(String[] row) {
        Rows.requireColumns(row, 6, "rooms");
        return new Room(
                Rows.required(row, 0, "rooms", "roomId"),
                Rows.required(row, 1, "rooms", "membership"),
                row[2],
                row[3],
                Rows.count(row, 4, "rooms", "joinedMembers"),
                Rows.count(row, 5, "rooms", "invitedMembers"));
    }

    public String roomId() {
        return roomId;
    }

    /** {@code join} or {@code invite}. */
    public String membership() {
        return membership;
    }

    /** Whether the user is invited (not yet joined). */
    public boolean isInvite() {
        return "invite".equals(membership);
    }

    /** The room name ({@code m.room.name}), or null. */
    public String name() {
        return name;
    }

    /** The {@code m.room.encryption} algorithm, or null if the room is not encrypted. */
    public String encryption() {
        return encryption;
    }

    /** Whether the room is encrypted with Megolm (the client refuses to send otherwise). */
    public boolean isEncrypted() {
        return MEGOLM.equals(encryption);
    }

    public int joinedMembers() {
        return joinedMembers;
    }

    public int invitedMembers() {
        return invitedMembers;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Room)) {
            return false;
        }
        Room r = (Room) o;
        return roomId.equals(r.roomId) && membership.equals(r.membership)
                && Objects.equals(name, r.name) && Objects.equals(encryption, r.encryption)
                && joinedMembers == r.joinedMembers && invitedMembers == r.invitedMembers;
    }

    @Override
    public int hashCode() {
        return Objects.hash(roomId, membership, name, encryption, joinedMembers, invitedMembers);
    }

    /** Without the room name, which can be sensitive ("cellule de crise …"): safe to log. */
    @Override
    public String toString() {
        return "Room{" + roomId + ", " + membership + ", encryption " + encryption + ", "
                + joinedMembers + " joined, " + invitedMembers + " invited}";
    }
}
