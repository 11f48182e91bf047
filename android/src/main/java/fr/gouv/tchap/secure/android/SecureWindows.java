package fr.gouv.tchap.secure.android;

import android.app.Activity;
import android.app.Dialog;
import android.view.Window;
import android.view.WindowManager;

/**
 * Keeps message content off screenshots, screen recordings, casting to non-secure displays and
 * the recent-apps thumbnail, with {@link WindowManager.LayoutParams#FLAG_SECURE} (MASVS-PLATFORM;
 * Olvid does the same). Android only.
 *
 * <p>Call {@link #protect(Activity)} in {@code onCreate} of <b>every</b> Activity that can show a
 * message, a room name or a contact, before {@code setContentView}; and
 * {@link #protect(Dialog)} for every Dialog that shows such content (a Dialog has its own
 * window, which does not inherit the flag). The flag is on the window, so it also covers
 * Fragments and Compose content inside it.
 */
public final class SecureWindows {
    private SecureWindows() {}

    /** Sets {@code FLAG_SECURE} on the Activity's window. */
    public static void protect(Activity activity) {
        protect(activity.getWindow());
    }

    /** Sets {@code FLAG_SECURE} on the Dialog's window (call before {@code show()}). */
    public static void protect(Dialog dialog) {
        Window window = dialog.getWindow();
        if (window == null) {
            throw new IllegalStateException("the dialog has no window");
        }
        protect(window);
    }

    /** Sets {@code FLAG_SECURE} on a window. */
    public static void protect(Window window) {
        window.setFlags(WindowManager.LayoutParams.FLAG_SECURE,
                WindowManager.LayoutParams.FLAG_SECURE);
    }
}
