package fr.gouv.tchap.secure;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.internal.TextListener;
import org.junit.runner.Description;
import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;
import org.junit.runner.notification.RunListener;

/**
 * {@code org.junit.runner.JUnitCore} with one line per test (name, outcome, duration) on top
 * of JUnit's usual report, so the driver's output says which test passed or failed. Arguments:
 * test class names. Exit status 0 only if every test passed.
 */
public final class JUnitMain {
    private JUnitMain() {}

    public static void main(String[] args) throws ClassNotFoundException {
        List<Class<?>> classes = new ArrayList<>();
        for (String name : args) {
            classes.add(Class.forName(name));
        }
        JUnitCore core = new JUnitCore();
        core.addListener(new TextListener(System.out));
        core.addListener(new RunListener() {
            private long started;
            private boolean failed;

            @Override
            public void testStarted(Description d) {
                started = System.nanoTime();
                failed = false;
            }

            @Override
            public void testFailure(Failure f) {
                failed = true;
            }

            @Override
            public void testAssumptionFailure(Failure f) {
                failed = true; // an assumption failure would be a silent skip: report it
            }

            @Override
            public void testFinished(Description d) {
                System.out.printf(Locale.ROOT, "%n[%s] %s.%s (%d ms)%n", failed ? "FAIL" : "PASS",
                        d.getTestClass().getSimpleName(), d.getMethodName(),
                        (System.nanoTime() - started) / 1_000_000);
            }
        });
        Result result = core.run(classes.toArray(new Class<?>[0]));
        boolean ok = result.wasSuccessful() && result.getIgnoreCount() == 0
                && result.getAssumptionFailureCount() == 0;
        System.out.printf(Locale.ROOT, "%nJUnitMain: %d run, %d failed, %d ignored, %d assumption"
                + " failures: %s%n", result.getRunCount(), result.getFailureCount(),
                result.getIgnoreCount(), result.getAssumptionFailureCount(), ok ? "OK" : "FAILED");
        System.exit(ok ? 0 : 1);
    }
}
