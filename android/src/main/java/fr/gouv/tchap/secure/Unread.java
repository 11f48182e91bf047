package fr.gouv.tchap.secure;

/**
 * A room's unread state ({@link SecureClient#unread}), computed on the device on the decrypted
 * messages of the other members after our read position ({@link SecureClient#markRead}). The
 * homeserver cannot read encrypted messages, so its own counts know nothing of mentions or
 * keywords: these are the ones to show. Each count stops at 999 ("999+" is enough for a
 * badge). Immutable.
 */
public final class Unread {
    private final int messages;
    private final int notify;
    private final int highlight;

    Unread(int messages, int notify, int highlight) {
        this.messages = messages;
        this.notify = notify;
        this.highlight = highlight;
    }

    /** From a native row {@code {messages, notify, highlight}} ({@link Native#unread}). */
    static Unread fromRow(String[] row) {
        Rows.requireColumns(row, 3, "unread");
        return new Unread(
                Rows.count(row, 0, "unread", "messages"),
                Rows.count(row, 1, "unread", "notify"),
                Rows.count(row, 2, "unread", "highlight"));
    }

    /** Messages of the other members after our read position. */
    public int messages() {
        return messages;
    }

    /**
     * Of those, the ones the account's push rules say notify (a direct message, a mention, a
     * keyword; in a muted room only mentions and keywords): the badge. (Not {@code notify()}:
     * that name is {@link Object#notify()}'s.)
     */
    public int notifying() {
        return notify;
    }

    /** Of the notifying ones, those that highlight (a mention of the member, a keyword). */
    public int highlight() {
        return highlight;
    }

    /** Whether nothing is unread. */
    public boolean isEmpty() {
        return messages == 0;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Unread)) {
            return false;
        }
        Unread u = (Unread) o;
        return messages == u.messages && notify == u.notify && highlight == u.highlight;
    }

    @Override
    public int hashCode() {
        return (messages * 31 + notify) * 31 + highlight;
    }

    @Override
    public String toString() {
        return "Unread{" + messages + " messages, " + notify + " notifying, " + highlight
                + " highlight}";
    }
}
