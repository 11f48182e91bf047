package fr.gouv.tchap.secure.android;

import android.content.BroadcastReceiver;
import android.content.Context;
import android.content.Intent;
import android.content.IntentFilter;
import android.content.RestrictionsManager;
import android.os.Build;
import android.os.Bundle;

import fr.gouv.tchap.secure.ConfigJson;

import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

/**
 * The MDM's managed configuration (Android Enterprise "managed configurations", declared in
 * {@code res/xml/app_restrictions.xml}) turned into the configuration JSON the native library
 * validates (DESIGN §8). Android only.
 *
 * <p>Typical use, off the main thread:
 *
 * <pre>{@code
 * Map<String, Object> restrictions = ManagedConfig.read(context);
 * KeyBinder binder = new KeystoreKeyBinder(
 *         ManagedConfig.flag(restrictions, "strongbox_required"),
 *         ManagedConfig.flag(restrictions, "unlocked_device_required"),
 *         challengeFromServerOrNull);
 * SecureClient client = SecureClient.open(
 *         ManagedConfig.toJson(restrictions), context.getNoBackupFilesDir(), binder);
 * }</pre>
 *
 * The library does not trust this layer: whatever the Bundle holds goes to the native
 * validator, which refuses unknown keys, {@code http://} URLs, fewer than two pins, malformed
 * PEM. When the MDM pushes a new configuration ({@link #onChange}), close the client and open it
 * again with the new JSON: a changed {@code wipe_command_nonce} makes that open crypto-shred the
 * data directory (error code {@code remote_wipe}).
 */
public final class ManagedConfig {
    private ManagedConfig() {}

    /**
     * The application restrictions the MDM pushed, as a map (String, Boolean, Integer,
     * String[] values as in the Bundle: an {@code integer} restriction such as
     * {@code max_attachment_bytes} is an Integer, written as a JSON number by
     * {@link ConfigJson}). Empty if none were pushed (the validator then reports the missing
     * keys). Never includes defaults: {@code RestrictionsManager} returns only what the MDM set.
     */
    @SuppressWarnings("deprecation") // Bundle.get(String): the only untyped getter.
    public static Map<String, Object> read(Context context) {
        RestrictionsManager manager = context.getSystemService(RestrictionsManager.class);
        if (manager == null) {
            return Collections.emptyMap();
        }
        Bundle bundle = manager.getApplicationRestrictions();
        if (bundle == null) {
            return Collections.emptyMap();
        }
        Map<String, Object> values = new HashMap<>();
        for (String key : bundle.keySet()) {
            values.put(key, bundle.get(key));
        }
        return Collections.unmodifiableMap(values);
    }

    /** The configuration JSON of these restrictions (see {@link ConfigJson} for the mapping). */
    public static byte[] toJson(Map<String, ?> restrictions) {
        return ConfigJson.fromMap(restrictions);
    }

    /** A bool restriction: true only if the MDM set it to true. */
    public static boolean flag(Map<String, ?> restrictions, String key) {
        return Boolean.TRUE.equals(restrictions.get(key));
    }

    /**
     * Runs {@code action} (on the main thread) whenever the MDM pushes new restrictions
     * ({@link Intent#ACTION_APPLICATION_RESTRICTIONS_CHANGED}, sent by the system only while
     * the app runs; read them again at every start too). Unregister the returned receiver with
     * {@link Context#unregisterReceiver} when done.
     */
    public static BroadcastReceiver onChange(Context context, Runnable action) {
        BroadcastReceiver receiver = new BroadcastReceiver() {
            @Override
            public void onReceive(Context c, Intent intent) {
                action.run();
            }
        };
        IntentFilter filter = new IntentFilter(Intent.ACTION_APPLICATION_RESTRICTIONS_CHANGED);
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
            // Not exported: only the platform (which sends this broadcast) and this app.
            context.registerReceiver(receiver, filter, Context.RECEIVER_NOT_EXPORTED);
        } else {
            context.registerReceiver(receiver, filter);
        }
        return receiver;
    }
}
