package fr.gouv.tchap.secure;

import java.io.FileDescriptor;
import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/**
 * Raw file descriptors on the host JVM, as Android's {@code ParcelFileDescriptor.detachFd()}
 * gives them: the number is taken out of a {@link FileDescriptor} (reflection on
 * {@code java.io}, opened to the tests by the driver's {@code --add-opens}), whose cleaner is
 * unregistered and whose number is set to -1, so the JVM never closes it: the library owns it.
 */
final class Fds {
    private Fds() {}

    /** Gives up {@code fd}'s number, as {@code detachFd()} does; the stream may then be closed. */
    static int detach(FileDescriptor fd) throws ReflectiveOperationException {
        Field number = FileDescriptor.class.getDeclaredField("fd");
        number.setAccessible(true);
        Method unregister = FileDescriptor.class.getDeclaredMethod("unregisterCleanup");
        unregister.setAccessible(true);
        synchronized (fd) {
            int n = number.getInt(fd);
            unregister.invoke(fd);
            number.setInt(fd, -1);
            return n;
        }
    }

    /**
     * Whether descriptor {@code n} of this process still refers to {@code file} (by
     * {@code /proc/self/fd}; a number reused meanwhile for another file does not count).
     */
    static boolean isOpenOn(int n, Path file) {
        Path link = Paths.get("/proc/self/fd/" + n);
        try {
            return Files.readSymbolicLink(link).equals(file.toAbsolutePath());
        } catch (IOException e) {
            return false;
        }
    }
}
