package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * One of the seven emoji of a SAS verification ({@link Verification#emoji()}): the symbol to
 * show and its English description from the Matrix specification (translate it for display).
 * Immutable.
 */
public final class SasEmoji {
    private final String symbol;
    private final String description;

    SasEmoji(String symbol, String description) {
        this.symbol = Objects.requireNonNull(symbol, "symbol");
        this.description = Objects.requireNonNull(description, "description");
    }

    /** The Unicode symbol. */
    public String symbol() {
        return symbol;
    }

    /** The specification's English description ("Dog", "Key", …). */
    public String description() {
        return description;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof SasEmoji)) {
            return false;
        }
        SasEmoji e = (SasEmoji) o;
        return symbol.equals(e.symbol) && description.equals(e.description);
    }

    @Override
    public int hashCode() {
        return Objects.hash(symbol, description);
    }

    @Override
    public String toString() {
        return symbol + " " + description;
    }
}
