package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * The file a message announces (an {@code m.file} or {@code m.image}): what the timeline shows
 * of it. Its key stays in the library; fetch it with {@link SecureClient#downloadFile}.
 * Immutable.
 */
public final class Attachment {
    private final String msgtype;
    private final String name;
    private final String mimetype;
    private final long size;

    Attachment(String msgtype, String name, String mimetype, long size) {
        this.msgtype = Objects.requireNonNull(msgtype, "msgtype");
        this.name = Objects.requireNonNull(name, "name");
        this.mimetype = mimetype;
        this.size = size;
    }

    /** {@code m.file} or {@code m.image}. */
    public String msgtype() {
        return msgtype;
    }

    /** The file name, sanitised by the library: safe to use as a file name. */
    public String name() {
        return name;
    }

    /** The announced media type ({@code type/subtype}), or null. */
    public String mimetype() {
        return mimetype;
    }

    /** The announced size in bytes (the sender's claim), or -1 if none. */
    public long size() {
        return size;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Attachment)) {
            return false;
        }
        Attachment a = (Attachment) o;
        return msgtype.equals(a.msgtype) && name.equals(a.name)
                && Objects.equals(mimetype, a.mimetype) && size == a.size;
    }

    @Override
    public int hashCode() {
        return Objects.hash(msgtype, name, mimetype, size);
    }

    /** The name is shown: it is what the room shows anyway, never the content. */
    @Override
    public String toString() {
        return "Attachment{" + msgtype + " " + name + ", " + mimetype + ", " + size + " bytes}";
    }
}
