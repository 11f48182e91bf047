package fr.gouv.tchap.secure;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * A member's display name as Tchap shows it, {@code Prénom Nom [Organisation]}, parsed and
 * neutralised by the library: bidi overrides and invisible characters removed, the organisation
 * split off only when the brackets are unambiguous, a lookalike of a known organisation (managed
 * configuration {@code known_organisations}) or a mix of Latin and Cyrillic or Greek letters
 * flagged. Show {@link #name()} and {@link #organisation()}; mark the sender when
 * {@link #isSuspicious()}. Immutable.
 */
public final class DisplayName {
    /** {@link #issues()}: bidi controls were removed. */
    public static final String BIDI_CONTROL = "bidi_control";
    /** {@link #issues()}: invisible characters were removed. */
    public static final String INVISIBLE = "invisible";
    /** {@link #issues()}: control characters became spaces. */
    public static final String CONTROL = "control";
    /** {@link #issues()}: there is no organisation. */
    public static final String NO_ORGANISATION = "no_organisation";
    /** {@link #issues()}: several or nested bracket groups: no organisation shown. */
    public static final String NESTED_BRACKETS = "nested_brackets";
    /** {@link #issues()}: a lone bracket: no organisation shown. */
    public static final String UNBALANCED_BRACKETS = "unbalanced_brackets";
    /** {@link #issues()}: nothing was left of the name: the user id's localpart is shown. */
    public static final String EMPTY_NAME = "empty_name";
    /** {@link #issues()}: the name or organisation was cut. */
    public static final String TOO_LONG = "too_long";
    /** {@link #issues()}: Latin mixed with Cyrillic or Greek letters. */
    public static final String MIXED_SCRIPTS = "mixed_scripts";
    /**
     * Prefix of an {@link #issues()} entry {@code lookalike_organisation:<known organisation>}:
     * the organisation only looks like a known one.
     */
    public static final String LOOKALIKE_ORGANISATION = "lookalike_organisation:";

    private final String name;
    private final String organisation;
    private final List<String> issues;

    DisplayName(String name, String organisation, List<String> issues) {
        this.name = Objects.requireNonNull(name, "name");
        this.organisation = organisation;
        this.issues = Collections.unmodifiableList(new ArrayList<>(issues));
    }

    /** From the native cells: the name, the organisation or null, the issues one per line. */
    static DisplayName fromCells(String name, String organisation, String issues, String table) {
        if (name == null || issues == null) {
            throw new IllegalStateException("native " + table + " row: display name cells are null");
        }
        List<String> list = new ArrayList<>();
        for (String issue : issues.split("\n")) {
            if (!issue.isEmpty()) {
                list.add(issue);
            }
        }
        return new DisplayName(name, organisation, list);
    }

    /** The person's name, neutralised; never empty. */
    public String name() {
        return name;
    }

    /** The organisation, neutralised, or null when there is none or it is ambiguous. */
    public String organisation() {
        return organisation;
    }

    /** What the parser found ({@link #BIDI_CONTROL}, …, {@code lookalike_organisation:X}). */
    public List<String> issues() {
        return issues;
    }

    /** The known organisation this one imitates, or null. */
    public String lookalikeOf() {
        for (String issue : issues) {
            if (issue.startsWith(LOOKALIKE_ORGANISATION)) {
                return issue.substring(LOOKALIKE_ORGANISATION.length());
            }
        }
        return null;
    }

    /** Whether anything other than a missing organisation was found: mark this sender. */
    public boolean isSuspicious() {
        for (String issue : issues) {
            if (!NO_ORGANISATION.equals(issue)) {
                return true;
            }
        }
        return false;
    }

    /** {@code name [organisation]}, or the name alone. */
    public String shown() {
        return organisation == null ? name : name + " [" + organisation + "]";
    }

    @Override
    public String toString() {
        return shown();
    }
}
