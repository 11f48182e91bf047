package fr.gouv.tchap.secure;

import java.util.Objects;

/**
 * A pusher as the homeserver lists it: which app, the device's address at the push
 * distributor, and where and how the homeserver notifies. Ours always notify the managed
 * configuration's push gateway with {@code event_id_only} (ids only, nothing readable).
 * Immutable.
 */
public final class Pusher {
    /** {@link #format()} of the pushers this library registers: event and room ids only. */
    public static final String EVENT_ID_ONLY = "event_id_only";

    private final String appId;
    private final String pushkey;
    private final String kind;
    private final String url;
    private final String format;
    private final boolean registeredHere;

    Pusher(String appId, String pushkey, String kind, String url, String format,
            boolean registeredHere) {
        this.appId = Objects.requireNonNull(appId, "appId");
        this.pushkey = Objects.requireNonNull(pushkey, "pushkey");
        this.kind = Objects.requireNonNull(kind, "kind");
        this.url = url;
        this.format = format;
        this.registeredHere = registeredHere;
    }

    /**
     * From a native row {@code {appId, pushkey, kind, url|null, format|null, registeredHere}}.
     */
    static Pusher fromRow(String[] row) {
        Rows.requireColumns(row, 6, "pusher");
        return new Pusher(
                Rows.required(row, 0, "pusher", "appId"),
                Rows.required(row, 1, "pusher", "pushkey"),
                Rows.required(row, 2, "pusher", "kind"),
                row[3],
                row[4],
                Rows.bool(row, 5, "pusher", "registeredHere"));
    }

    /** The app's id. */
    public String appId() {
        return appId;
    }

    /** The device's address at the push distributor. */
    public String pushkey() {
        return pushkey;
    }

    /** {@code http}. */
    public String kind() {
        return kind;
    }

    /** The push gateway's notify URL, or null. */
    public String url() {
        return url;
    }

    /** {@link #EVENT_ID_ONLY} for ours; null if the homeserver shows none. */
    public String format() {
        return format;
    }

    /** Whether this device registered it (and logout or wipe removes it). */
    public boolean isRegisteredHere() {
        return registeredHere;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Pusher)) {
            return false;
        }
        Pusher p = (Pusher) o;
        return appId.equals(p.appId) && pushkey.equals(p.pushkey) && kind.equals(p.kind)
                && Objects.equals(url, p.url) && Objects.equals(format, p.format)
                && registeredHere == p.registeredHere;
    }

    @Override
    public int hashCode() {
        return Objects.hash(appId, pushkey, kind, url, format, registeredHere);
    }

    @Override
    public String toString() {
        return "Pusher{" + appId + ", " + kind + ", " + url + ", " + format
                + (registeredHere ? ", this device" : "") + "}";
    }
}
