/**
 * The Android-only part of the Java API: everything here imports {@code android.*}, so the
 * host build (the JVM tests driven by {@code tests/tests/jvm.rs}) excludes this package and it
 * is compiled only by the Gradle build. It is kept small on purpose — the Keystore key binder,
 * the managed configuration reader, {@code FLAG_SECURE} — because it cannot be tested on the
 * host; the logic it shares with the host binder ({@code Pkcs11KeyBinder}: JCA AES-GCM wrap
 * format, alias from the key id, error mapping) and the JSON it hands to the library
 * ({@code ConfigJson}) are tested there.
 */
package fr.gouv.tchap.secure.android;
