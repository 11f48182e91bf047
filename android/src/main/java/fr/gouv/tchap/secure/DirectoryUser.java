package fr.gouv.tchap.secure;

import java.util.Objects;

/** A user the directory found, with their name parsed and checked. Immutable. */
public final class DirectoryUser {
    private final String userId;
    private final String displayName;
    private final DisplayName name;

    DirectoryUser(String userId, String displayName, DisplayName name) {
        this.userId = Objects.requireNonNull(userId, "userId");
        this.displayName = displayName;
        this.name = Objects.requireNonNull(name, "name");
    }

    /** From {@code {userId, displayName|null, name, organisation|null, issues}}. */
    static DirectoryUser fromRow(String[] row) {
        Rows.requireColumns(row, 5, "directory");
        return new DirectoryUser(
                Rows.required(row, 0, "directory", "userId"),
                row[1],
                DisplayName.fromCells(row[2], row[3], row[4], "directory"));
    }

    public String userId() {
        return userId;
    }

    /** The display name as the server has it, raw, or null: show {@link #name()}. */
    public String displayName() {
        return displayName;
    }

    /** The name and organisation, parsed, neutralised and checked. */
    public DisplayName name() {
        return name;
    }
}
