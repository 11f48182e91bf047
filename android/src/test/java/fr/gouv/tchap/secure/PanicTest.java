package fr.gouv.tchap.secure;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.fail;

import org.junit.BeforeClass;
import org.junit.Test;

/** (b) A Rust panic never crosses JNI: it becomes a {@link TchapSecureException} "panic". */
public class PanicTest {
    @BeforeClass
    public static void init() {
        TestEnv.init();
    }

    @Test
    public void panicBecomesTchapSecureException() {
        for (int i = 0; i < 3; i++) {
            try {
                SecureClient.testPanic();
                fail("testPanic returned normally");
            } catch (TchapSecureException e) {
                assertEquals("panic", e.getCode());
            }
        }
        // The library is still usable after the panics.
        assertFalse(SecureClient.configKeys().isEmpty());
    }
}
