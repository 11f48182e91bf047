package fr.gouv.tchap.secure;

/**
 * Checks on the {@code String[][]} rows {@link Native} returns. A row of the wrong shape means
 * the Java classes and the library disagree on the contract: that is a bug, reported loudly
 * ({@link IllegalStateException}), never papered over with a default.
 */
final class Rows {
    private Rows() {}

    static void requireColumns(String[] row, int columns, String table) {
        if (row == null || row.length != columns) {
            throw new IllegalStateException("native " + table + " row has "
                    + (row == null ? "no" : String.valueOf(row.length)) + " columns, expected "
                    + columns + " (Java classes and libtchap_secure.so out of step?)");
        }
    }

    static String required(String[] row, int column, String table, String name) {
        String value = row[column];
        if (value == null) {
            throw new IllegalStateException("native " + table + " row: " + name + " is null");
        }
        return value;
    }

    static int count(String[] row, int column, String table, String name) {
        String value = required(row, column, table, name);
        try {
            int n = Integer.parseInt(value);
            if (n < 0) {
                throw new NumberFormatException("negative");
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalStateException("native " + table + " row: " + name
                    + " is not a count: " + value, e);
        }
    }

    static long size(String[] row, int column, String table, String name) {
        String value = required(row, column, table, name);
        try {
            long n = Long.parseLong(value);
            if (n < 0) {
                throw new NumberFormatException("negative");
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalStateException("native " + table + " row: " + name
                    + " is not a size: " + value, e);
        }
    }

    static boolean bool(String[] row, int column, String table, String name) {
        String value = required(row, column, table, name);
        switch (value) {
            case "true":
                return true;
            case "false":
                return false;
            default:
                throw new IllegalStateException("native " + table + " row: " + name
                        + " is not true/false: " + value);
        }
    }
}
