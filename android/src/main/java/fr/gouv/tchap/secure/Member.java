package fr.gouv.tchap.secure;

import java.util.Objects;

/** A member of a room, with their name parsed and checked. Immutable. */
public final class Member {
    private final String userId;
    private final String membership;
    private final String displayName;
    private final DisplayName name;

    Member(String userId, String membership, String displayName, DisplayName name) {
        this.userId = Objects.requireNonNull(userId, "userId");
        this.membership = Objects.requireNonNull(membership, "membership");
        this.displayName = displayName;
        this.name = Objects.requireNonNull(name, "name");
    }

    /** From {@code {userId, membership, displayName|null, name, organisation|null, issues}}. */
    static Member fromRow(String[] row) {
        Rows.requireColumns(row, 6, "members");
        return new Member(
                Rows.required(row, 0, "members", "userId"),
                Rows.required(row, 1, "members", "membership"),
                row[2],
                DisplayName.fromCells(row[3], row[4], row[5], "members"));
    }

    public String userId() {
        return userId;
    }

    /** {@code join}, {@code invite}, {@code leave} or {@code ban}. */
    public String membership() {
        return membership;
    }

    /** The display name as the member set it, raw, or null: show {@link #name()}. */
    public String displayName() {
        return displayName;
    }

    /** The name and organisation, parsed, neutralised and checked. */
    public DisplayName name() {
        return name;
    }
}
