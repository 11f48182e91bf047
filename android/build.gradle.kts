// The Tchap Secure Android library: the Java API (fr.gouv.tchap.secure), the Android-only
// classes (fr.gouv.tchap.secure.android), the manifest and resources, and libtchap_secure.so
// for each ABI, built from the Rust workspace by cargo-ndk before every build.
//
// No dependencies: the library uses only the platform (android.*, java.*, javax.*).

plugins {
    id("com.android.library") version "8.7.3"
}

android {
    namespace = "fr.gouv.tchap.secure"
    compileSdk = 35

    defaultConfig {
        minSdk = 28 // StrongBox and setUnlockedDeviceRequired (Android 9)
        // Keeps the classes and members the native library reaches by name (JNI).
        consumerProguardFiles("consumer-rules.pro")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildTypes {
        release {
            // A library is shrunk by the app that uses it, with consumer-rules.pro.
            isMinifyEnabled = false
        }
    }

    testOptions {
        unitTests.all {
            // src/test holds the host JVM tests. They need the host libtchap_secure.so, a
            // Synapse and SoftHSM2 tokens, which tests/tests/jvm.rs provides:
            //   cargo test -p tchap-secure-tests --test jvm
            // Gradle cannot run them on its own, so its unit-test tasks are off (the tests
            // are still compiled, and never packaged in the AAR).
            it.enabled = false
        }
    }
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

// libtchap_secure.so for every ABI, into src/main/jniLibs/<abi>/ (packaged in the AAR's jni/).
// Runs from the Cargo workspace root (the parent of this directory); needs cargo-ndk, the
// Rust Android targets and ANDROID_NDK_HOME (README.md). Always runs: cargo does its own
// incremental build.
val cargoNdk by tasks.registering(Exec::class) {
    group = "build"
    description = "Builds libtchap_secure.so for Android with cargo-ndk."
    val jniLibs = layout.projectDirectory.dir("src/main/jniLibs").asFile
    workingDir = rootDir.parentFile
    // android-env.sh builds the crypto-only OpenSSL for each ABI with the NDK's clang and
    // points SQLCipher at it (native/openssl-min/README.md): the 6 MB budget per ABI.
    commandLine(
        "native/openssl-min/android-env.sh",
        "cargo", "ndk",
        "-t", "arm64-v8a",
        "-t", "armeabi-v7a",
        "-t", "x86_64",
        "--platform", "28",
        "-o", jniLibs.absolutePath,
        "build", "--release", "-p", "tchap-secure-jni",
    )
    outputs.dir(jniLibs)
    outputs.upToDateWhen { false }
}

tasks.named("preBuild") {
    dependsOn(cargoNdk)
}
