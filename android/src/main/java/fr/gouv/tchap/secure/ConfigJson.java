package fr.gouv.tchap.secure;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Builds the configuration JSON the native validator reads (DESIGN §8) from the key/value pairs
 * an MDM delivers as Android managed configuration ({@code android.ManagedConfig} turns the
 * restrictions {@code Bundle} into the map). Plain Java: tested on the host against the real
 * validator.
 *
 * <p>This class validates nothing: the native validator is the one place where the
 * configuration is checked, strictly. In particular unknown keys are passed through, so that a
 * misspelt or unsupported MDM key is refused by the validator instead of silently dropped.
 *
 * <h2>Value mapping</h2>
 *
 * <ul>
 *   <li>{@code null}, and a String that is empty or only whitespace: the key is omitted. An MDM
 *       console sends an empty string for a field the administrator left blank; for an optional
 *       key that means "not set", for a mandatory key the validator then reports it missing.
 *   <li>{@link String} → JSON string, except for the list keys {@value #SPKI_PINS} and
 *       {@value #SCANNER_KEYS}: the MDM delivers such a list as one string of values separated
 *       by commas and/or line breaks, split here into a JSON array (empty items dropped, each
 *       item trimmed). {@value #KNOWN_ORGANISATIONS} is a list too, one organisation per line
 *       (line breaks only: an organisation's name may hold a comma).
 *   <li>{@link Boolean} → {@code true}/{@code false}.
 *   <li>{@code String[]} or a {@link Collection} of Strings → JSON array of strings.
 *   <li>{@link Integer}, {@link Long} → JSON number: {@code max_attachment_bytes} and
 *       {@code max_message_lifetime_days} (Android {@code integer} restrictions, delivered as
 *       Integers). Absent, the key is omitted and the validator's default applies (100 MiB; no
 *       lifetime ceiling); their ranges (1 to {@link Integer#MAX_VALUE}; 1 to 3650) are checked
 *       by the validator, not here.
 *   <li>anything else → {@link IllegalArgumentException}.
 * </ul>
 *
 * No value is converted from one type to another: a String under a bool or integer key stays
 * a JSON string (and the validator refuses it with a wrong-type error), a number under a string
 * key stays a number.
 *
 * Keys are written in sorted order, so the same map always gives the same bytes.
 */
public final class ConfigJson {
    /** The SPKI pins key: one MDM string, several pins. */
    public static final String SPKI_PINS = "spki_pins_sha256";
    /** The content scanner's pinned public keys: one MDM string, several keys. */
    public static final String SCANNER_KEYS = "content_scanner_keys";
    /** The State's organisations, one per line (names may hold commas). */
    public static final String KNOWN_ORGANISATIONS = "known_organisations";

    private ConfigJson() {}

    /** The configuration document, UTF-8. */
    public static byte[] fromMap(Map<String, ?> values) {
        return toJson(values).getBytes(StandardCharsets.UTF_8);
    }

    /** The configuration document as a string. */
    public static String toJson(Map<String, ?> values) {
        if (values == null) {
            throw new IllegalArgumentException("values is null");
        }
        TreeMap<String, Object> sorted = new TreeMap<>();
        for (Map.Entry<String, ?> e : values.entrySet()) {
            if (e.getKey() == null) {
                throw new IllegalArgumentException("null configuration key");
            }
            sorted.put(e.getKey(), e.getValue());
        }
        StringBuilder out = new StringBuilder();
        out.append('{');
        boolean first = true;
        for (Map.Entry<String, Object> e : sorted.entrySet()) {
            String key = e.getKey();
            Object value = normalise(key, e.getValue());
            if (value == null) {
                continue;
            }
            if (!first) {
                out.append(',');
            }
            first = false;
            quote(key, out);
            out.append(':');
            writeValue(key, value, out);
        }
        out.append('}');
        return out.toString();
    }

    /**
     * Splits the MDM form of a list (the pins, the scanner keys): values separated by commas and/or line breaks, each
     * trimmed, empty ones dropped. Whatever else is in the string stays in a pin, for the
     * validator to refuse.
     */
    public static List<String> splitPins(String pins) {
        List<String> out = new ArrayList<>();
        for (String item : pins.split("[,\\r\\n]")) {
            String trimmed = item.trim();
            if (!trimmed.isEmpty()) {
                out.add(trimmed);
            }
        }
        return out;
    }

    /** The MDM form of a list of names: one per line, each trimmed, empty lines dropped. */
    public static List<String> splitLines(String lines) {
        List<String> out = new ArrayList<>();
        for (String item : lines.split("[\\r\\n]")) {
            String trimmed = item.trim();
            if (!trimmed.isEmpty()) {
                out.add(trimmed);
            }
        }
        return out;
    }

    /** The value to write, or null to omit the key. */
    private static Object normalise(String key, Object value) {
        if (value == null) {
            return null;
        }
        if (value instanceof String) {
            String s = (String) value;
            if (s.trim().isEmpty()) {
                return null;
            }
            if (SPKI_PINS.equals(key) || SCANNER_KEYS.equals(key)) {
                return splitPins(s);
            }
            if (KNOWN_ORGANISATIONS.equals(key)) {
                return splitLines(s);
            }
            return s;
        }
        if (value instanceof String[]) {
            return Arrays.asList((String[]) value);
        }
        if (value instanceof Collection) {
            List<String> items = new ArrayList<>();
            for (Object item : (Collection<?>) value) {
                if (!(item instanceof String)) {
                    throw new IllegalArgumentException("configuration key " + key
                            + ": array items must be strings");
                }
                items.add((String) item);
            }
            return items;
        }
        if (value instanceof Boolean || value instanceof Integer || value instanceof Long) {
            return value;
        }
        throw new IllegalArgumentException("configuration key " + key + ": unsupported type "
                + value.getClass().getName());
    }

    private static void writeValue(String key, Object value, StringBuilder out) {
        if (value instanceof String) {
            quote((String) value, out);
        } else if (value instanceof List) {
            out.append('[');
            boolean first = true;
            for (Object item : (List<?>) value) {
                if (item == null) {
                    throw new IllegalArgumentException("configuration key " + key
                            + ": null array item");
                }
                if (!first) {
                    out.append(',');
                }
                first = false;
                quote(SPKI_PINS.equals(key) ? ((String) item).trim() : (String) item, out);
            }
            out.append(']');
        } else {
            // Boolean, Integer or Long: their toString is their JSON form.
            out.append(value);
        }
    }

    /**
     * Appends {@code s} as a JSON string (RFC 8259 §7): quotes, backslash and every control
     * character escaped, U+2028/U+2029 escaped too (harmless, and safe for JavaScript readers);
     * an unpaired surrogate is refused (it has no UTF-8 form).
     */
    static void quote(String s, StringBuilder out) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    out.append("\\\"");
                    break;
                case '\\':
                    out.append("\\\\");
                    break;
                case '\n':
                    out.append("\\n");
                    break;
                case '\r':
                    out.append("\\r");
                    break;
                case '\t':
                    out.append("\\t");
                    break;
                case '\b':
                    out.append("\\b");
                    break;
                case '\f':
                    out.append("\\f");
                    break;
                default:
                    if (c < 0x20 || c == 0x7f || c == '\u2028' || c == '\u2029') {
                        out.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else if (Character.isHighSurrogate(c)) {
                        if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
                            throw new IllegalArgumentException("unpaired surrogate in a string");
                        }
                        out.append(c).append(s.charAt(++i));
                    } else if (Character.isLowSurrogate(c)) {
                        throw new IllegalArgumentException("unpaired surrogate in a string");
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }
}
