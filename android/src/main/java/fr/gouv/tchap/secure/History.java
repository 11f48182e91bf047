package fr.gouv.tchap.secure;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** What {@link SecureClient#loadOlder} loaded. Immutable. */
public final class History {
    private final List<Message> messages;
    private final boolean reachedStart;

    History(List<Message> messages, boolean reachedStart) {
        this.messages = Collections.unmodifiableList(new ArrayList<>(messages));
        this.reachedStart = reachedStart;
    }

    /**
     * From the native table: row 0 {@code {reachedStart}}, then message rows (see
     * {@link Message#fromRow}).
     */
    static History fromRows(String[][] rows) {
        if (rows == null || rows.length == 0) {
            throw new IllegalStateException("native loadOlder returned no header row"
                    + " (Java classes and libtchap_secure.so out of step?)");
        }
        Rows.requireColumns(rows[0], 1, "loadOlder");
        boolean reachedStart = Rows.bool(rows[0], 0, "loadOlder", "reachedStart");
        List<Message> messages = new ArrayList<>(rows.length - 1);
        for (int i = 1; i < rows.length; i++) {
            messages.add(Message.fromRow(rows[i]));
        }
        return new History(messages, reachedStart);
    }

    /**
     * The messages newly loaded (decrypted, waiting for their key, or refused), oldest first;
     * they are now in the store too ({@link SecureClient#messages}).
     */
    public List<Message> messages() {
        return messages;
    }

    /** The start of the room was reached: there is nothing older to load. */
    public boolean reachedStart() {
        return reachedStart;
    }

    @Override
    public String toString() {
        return "History{" + messages.size() + " messages, reachedStart " + reachedStart + "}";
    }
}
