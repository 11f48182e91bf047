//! The Java API on the host JVM (DESIGN §9): the real debug `libtchap_secure.so` loaded by
//! JDK 17, running the host-testable Java sources of `android/` and their JUnit 4 tests, with
//! the key binder on SunPKCS11 over SoftHSM2 and the shared Synapse of this process.
//!
//! The driver compiles `android/src/main/java` (without the `fr.gouv.tchap.secure.android`
//! package, which needs the Android SDK) and `android/src/test/java` with `javac`, prepares
//! what the tests need — twenty-two registered users, the client configuration, a SoftHSM2 token
//! directory with three tokens (main, other, spare), a scratch directory — and runs every
//! `*Test` class in a child JVM with `JUnitMain` (JUnit 4's `JUnitCore` plus one PASS/FAIL line
//! per test; an ignored test or a failed assumption counts as a failure). It prints the JVM's
//! output and fails unless the JVM exits with status 0. Nothing is skipped: a missing JDK,
//! JUnit or library is a failure that says what to do.
//!
//! For the attachment tests it also starts the content scanner's testbed
//! (`content_scanner.rs`: the legacy-media Synapse, matrix-content-scanner with ClamAV, nginx
//! as the front), registers two users there and passes its client configuration
//! (`tchap.scannerConfig`) and the EICAR file. The JVM gets `--add-opens java.base/java.io` so
//! the tests can take a raw descriptor out of a `FileDescriptor`, as Android's `detachFd()`
//! gives one (`Fds.java`).
//!
//! Inputs reach the JVM as system properties; the secrets (user passwords, token PINs) go in
//! a mode-0600 properties file instead, so that no PIN appears on a command line (DESIGN §2).
//! The JVM runs with `-Xcheck:jni` (the JVM's own checks of every JNI call the bridge makes;
//! any warning fails the test) and a fixed, pre-touched heap so the open/close leak test
//! measures native memory, not heap growth.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tchap_secure_tests::content_scanner::ContentScanner;
use tchap_secure_tests::harness::PASSWORD;
use tchap_secure_tests::push_gateway::PushGateway;
use tchap_secure_tests::softhsm::SoftHsmToken;
use tchap_secure_tests::sydent::Sydent;
use tchap_secure_tests::synapse::Synapse;

/// The JUnit run must finish within this (the 1,000-cycle leak test included).
const JVM_TIMEOUT: Duration = Duration::from_secs(20 * 60);

const JUNIT_JARS: [&str; 2] = [
    "/usr/share/java/junit4.jar",
    "/usr/share/java/hamcrest-core.jar",
];

const MAIN_PIN: &str = "jvm-main-pin-1234";
const OTHER_PIN: &str = "jvm-other-pin-5678";
const SPARE_PIN: &str = "jvm-spare-pin-9012";

/// `android/` of this repository.
fn android_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .join("android")
}

/// The debug `libtchap_secure.so` built next to this test binary (target/<profile>/), or
/// `TCHAP_SECURE_JNI_LIB`.
fn jni_lib() -> PathBuf {
    if let Some(path) = std::env::var_os("TCHAP_SECURE_JNI_LIB") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let lib = profile_dir.join("libtchap_secure.so");
    assert!(
        lib.exists(),
        "{} is missing: build the JNI library first (`cargo build --workspace`)",
        lib.display()
    );
    lib
}

/// `$JAVA_HOME/bin/<tool>` if `JAVA_HOME` is set, else `<tool>` from `PATH`; checked to run.
fn jdk_tool(tool: &str) -> PathBuf {
    let path = match std::env::var_os("JAVA_HOME") {
        Some(home) => Path::new(&home).join("bin").join(tool),
        None => PathBuf::from(tool),
    };
    let runs = Command::new(&path)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        runs,
        "`{}` does not run: install a JDK 17 (run tests/setup.sh)",
        path.display()
    );
    path
}

/// Every `.java` file under `dir`, sorted, skipping directories named in `exclude` (relative
/// to `dir`).
fn java_sources(dir: &Path, exclude: &[&Path]) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, exclude: &[&Path], out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                let relative = path.strip_prefix(root).expect("under the root");
                if !exclude.contains(&relative) {
                    walk(root, &path, exclude, out);
                }
            } else if path.extension().is_some_and(|e| e == "java") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, exclude, &mut out);
    out.sort();
    out
}

/// The PKCS#11 slot id of the token labelled `label`, from `softhsm2-util --show-slots`
/// (testbed side only: the Java binder takes the slot id, see `Pkcs11KeyBinder`).
fn slot_of(show_slots: &str, label: &str) -> u64 {
    let mut current = None;
    for line in show_slots.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Slot ") {
            if let Ok(id) = rest.trim().parse::<u64>() {
                current = Some(id);
            }
        } else if let Some(found) = line.strip_prefix("Label:")
            && found.trim() == label
        {
            return current.unwrap_or_else(|| panic!("no slot line before label {label}"));
        }
    }
    panic!("no token labelled {label}:\n{show_slots}");
}

/// A properties-file line; the values used here need no escaping, which is checked.
fn property(key: &str, value: &str) -> String {
    assert!(
        !value.contains(['\\', '\n', '\r']),
        "{key}: value needs escaping"
    );
    format!("{key}={value}\n")
}

#[test]
fn java_api_on_the_host_jvm() {
    // --- tools and library -----------------------------------------------------------------
    let lib = jni_lib();
    let javac = jdk_tool("javac");
    let java = jdk_tool("java");
    for jar in JUNIT_JARS {
        assert!(
            Path::new(jar).exists(),
            "{jar} is missing: install JUnit 4 (`apt-get install junit4`, run tests/setup.sh)"
        );
    }
    let junit_classpath = JUNIT_JARS.join(":");

    // --- compile ---------------------------------------------------------------------------
    let android = android_dir();
    let scratch = tempfile::Builder::new()
        .prefix("tchap-jvm-")
        .tempdir()
        .expect("scratch directory");
    let classes = scratch.path().join("classes");
    let main_sources = java_sources(
        &android.join("src/main/java"),
        &[Path::new("fr/gouv/tchap/secure/android")],
    );
    let test_root = android.join("src/test/java");
    let test_sources = java_sources(&test_root, &[]);
    assert!(
        main_sources
            .iter()
            .any(|p| p.ends_with("SecureClient.java")),
        "no SecureClient.java under {}",
        android.display()
    );
    let output = Command::new(&javac)
        .args([
            "--release",
            "17",
            "-encoding",
            "UTF-8",
            "-Xlint:all",
            "-Werror",
            "-d",
        ])
        .arg(&classes)
        .args(["-cp", &junit_classpath])
        .args(&main_sources)
        .args(&test_sources)
        .output()
        .expect("run javac");
    assert!(
        output.status.success(),
        "javac failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let test_classes: Vec<String> = test_sources
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("Test.java"))
        })
        .map(|p| {
            p.strip_prefix(&test_root)
                .expect("under src/test/java")
                .with_extension("")
                .to_string_lossy()
                .replace('/', ".")
        })
        .collect();
    assert!(
        !test_classes.is_empty(),
        "no *Test.java under {}",
        test_root.display()
    );

    // --- homeserver, users, configuration --------------------------------------------------
    let synapse = Synapse::shared();
    let register = |synapse: &Synapse, prefixes: &[&str]| -> Vec<String> {
        prefixes
            .iter()
            .map(|prefix| {
                let localpart = synapse.unique_user(prefix);
                synapse.register(&localpart, PASSWORD, false);
                format!("{localpart}:{PASSWORD}")
            })
            .collect()
    };
    let users = register(
        synapse,
        &[
            "jvm-alice",
            "jvm-bob",
            "jvm-carol",
            "jvm-dave",
            "jvm-erin",
            "jvm-frank",
            "jvm-grace",
            "jvm-henry",
            "jvm-iris",
            "jvm-judy",
            "jvm-kate",
            "jvm-leo",
            "jvm-mike",
            "jvm-nina",
            "jvm-olga",
            "jvm-paul",
            "jvm-quinn",
            "jvm-rose",
            "jvm-sam",
            "jvm-tina",
            "jvm-uma",
            "jvm-victor",
        ],
    );
    // IdentityTest (issue 19): sam is a colleague found by name and by e-mail (his address
    // bound at the homeserver and the identity server, Tchap's display name); tina logs in by
    // e-mail; uma's account has expired before the JVM starts; victor logs another device out.
    let localpart_of = |index: usize| {
        users[index]
            .split(':')
            .next()
            .expect("localpart")
            .to_owned()
    };
    let user_id_of = |localpart: &str| format!("@{localpart}:{}", synapse.server_name);
    let sydent = Sydent::shared();
    let (sam, tina, uma) = (localpart_of(18), localpart_of(19), localpart_of(20));
    let sam_mail = format!("{sam}@armees.gouv.fr");
    let tina_mail = format!("{tina}@armees.gouv.fr");
    synapse.add_email_threepid(&user_id_of(&sam), &sam_mail);
    sydent.bind_email(&sam_mail, &user_id_of(&sam));
    synapse.add_email_threepid(&user_id_of(&tina), &tina_mail);
    let sam_session = synapse.login(&sam, PASSWORD);
    synapse.set_display_name(
        &sam_session.access_token,
        &user_id_of(&sam),
        "Sam Durand [Ministère des Armées]",
    );
    synapse.expire_account(&user_id_of(&uma));
    let config = synapse.client_config();
    let config_path = scratch.path().join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&config).expect("config JSON"),
    )
    .expect("write config.json");
    // IdentityTest's configuration: the identity server, and the State's organisations.
    let mut identity_config = config.clone();
    identity_config["identity_server_url"] = serde_json::json!(format!("{}/", sydent.base_url));
    identity_config["known_organisations"] = serde_json::json!(["Ministère des Armées"]);
    let identity_config_path = scratch.path().join("identity-config.json");
    std::fs::write(
        &identity_config_path,
        serde_json::to_vec_pretty(&identity_config).expect("identity config JSON"),
    )
    .expect("write identity-config.json");
    // The testbed's push gateway (PushTest), kept running until the JVM is done, and the
    // configuration that names it.
    let gateway = PushGateway::start(&synapse.pki.server);
    let mut push_config = config.clone();
    push_config["push_gateway_url"] = serde_json::json!(gateway.notify_url());
    let push_config_path = scratch.path().join("push-config.json");
    std::fs::write(
        &push_config_path,
        serde_json::to_vec_pretty(&push_config).expect("push config JSON"),
    )
    .expect("write push-config.json");
    // The content scanner's testbed (attachments), kept running until the JVM is done.
    let scanner = ContentScanner::start(Synapse::shared_legacy_media());
    let scanner_users = register(
        Synapse::shared_legacy_media(),
        &["jvm-xavier", "jvm-yvonne"],
    );
    let scanner_config_path = scratch.path().join("scanner-config.json");
    std::fs::write(
        &scanner_config_path,
        serde_json::to_vec_pretty(&scanner.client_config()).expect("scanner config JSON"),
    )
    .expect("write scanner-config.json");
    let anchors_path = scratch.path().join("trust_anchors.pem");
    std::fs::write(&anchors_path, &synapse.pki.root_ca_pem).expect("write trust anchors");
    let pins = config["spki_pins_sha256"]
        .as_array()
        .expect("pins array")
        .iter()
        .map(|p| p.as_str().expect("pin string").to_owned())
        .collect::<Vec<_>>()
        .join(",");

    // --- tokens ----------------------------------------------------------------------------
    // All three exist before the JVM starts: SoftHSM2 enumerates slots once, at C_Initialize.
    let token = SoftHsmToken::with_pin("jvm-main", MAIN_PIN);
    token.add_token("jvm-other", OTHER_PIN);
    token.add_token("jvm-spare", SPARE_PIN);
    let slots = token.show_slots();

    let data_root = scratch.path().join("data");
    std::fs::create_dir(&data_root).expect("create the data root");
    let secrets_path = scratch.path().join("secrets.properties");
    tchap_secure_tests::harness::write_private(
        &secrets_path,
        [
            property("tchap.users", &users.join(",")),
            property("tchap.scannerUsers", &scanner_users.join(",")),
            property("tchap.pkcs11.pin", MAIN_PIN),
            property("tchap.pkcs11.otherPin", OTHER_PIN),
            property("tchap.pkcs11.sparePin", SPARE_PIN),
        ]
        .concat(),
    );

    // --- run -------------------------------------------------------------------------------
    let properties = [
        ("tchap.lib", lib.display().to_string()),
        ("tchap.config", config_path.display().to_string()),
        ("tchap.secretsFile", secrets_path.display().to_string()),
        ("tchap.dataRoot", data_root.display().to_string()),
        ("tchap.androidDir", android.display().to_string()),
        ("tchap.pkcs11.library", token.module.display().to_string()),
        ("tchap.pkcs11.slot", slot_of(&slots, "jvm-main").to_string()),
        (
            "tchap.pkcs11.otherSlot",
            slot_of(&slots, "jvm-other").to_string(),
        ),
        (
            "tchap.pkcs11.spareSlot",
            slot_of(&slots, "jvm-spare").to_string(),
        ),
        ("tchap.homeserverUrl", synapse.base_url.clone()),
        ("tchap.serverName", synapse.server_name.clone()),
        (
            "tchap.trustAnchorsPemFile",
            anchors_path.display().to_string(),
        ),
        ("tchap.spkiPins", pins),
        ("tchap.rootPin", synapse.pki.root_pin()),
        ("tchap.pushConfig", push_config_path.display().to_string()),
        (
            "tchap.identityConfig",
            identity_config_path.display().to_string(),
        ),
        ("tchap.samEmail", sam_mail.clone()),
        ("tchap.tinaEmail", tina_mail.clone()),
        (
            "tchap.scannerConfig",
            scanner_config_path.display().to_string(),
        ),
        (
            "tchap.eicarFile",
            scanner.eicar_path().display().to_string(),
        ),
    ];
    let stdout_path = scratch.path().join("jvm.stdout");
    let stderr_path = scratch.path().join("jvm.stderr");
    let mut command = Command::new(&java);
    command
        .args([
            "-Xcheck:jni",
            "-Xms256m",
            "-Xmx256m",
            "-XX:+AlwaysPreTouch",
            "-ea",
            "-Dfile.encoding=UTF-8",
            "--add-opens",
            "java.base/java.io=ALL-UNNAMED",
        ])
        .args(properties.iter().map(|(k, v)| format!("-D{k}={v}")))
        .arg("-cp")
        .arg(format!("{}:{junit_classpath}", classes.display()))
        .arg("fr.gouv.tchap.secure.JUnitMain")
        .args(&test_classes)
        .envs(token.env())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("create jvm.stdout"))
        .stderr(std::fs::File::create(&stderr_path).expect("create jvm.stderr"));
    println!(
        "jvm: {} test classes: {}",
        test_classes.len(),
        test_classes.join(" ")
    );
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn java");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for java") {
            break Some(status);
        }
        if started.elapsed() > JVM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    println!("--- JVM stdout ---\n{stdout}--- JVM stderr ---\n{stderr}--- end of JVM output ---");
    println!("jvm: ran for {:.1} s", started.elapsed().as_secs_f64());

    let Some(status) = status else {
        panic!("the JVM did not finish within {JVM_TIMEOUT:?} (killed); output above");
    };
    assert!(
        status.success(),
        "JUnit failed ({status}); see the JVM output above. Synapse log tail:\n{}\nContent \
         scanner testbed:\n{}",
        synapse.log_tail(30),
        scanner.logs()
    );
    let misuse = bridge_jni_warnings(&format!("{stdout}\n{stderr}"));
    assert!(
        misuse.is_empty(),
        "-Xcheck:jni reported JNI misuse by the bridge:\n{}",
        misuse.join("\n")
    );
}

/// The `-Xcheck:jni` warnings that concern our bridge: every "WARNING in native method" (a
/// JNI call made with an exception pending, a wrong reference type, …) and every local
/// reference overflow whose innermost frame is one of our native methods. Local reference
/// overflows inside the JDK's own native code are not ours: SunPKCS11's `C_GenerateKey`
/// converts the 14-attribute key template with more than the default 32 local references
/// (seen with JDK 17), so those are printed but not counted.
fn bridge_jni_warnings(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("WARNING in native method") || line.contains("FATAL ERROR in native") {
            found.push(line.to_string());
        } else if line.contains("WARNING: JNI local refs") {
            let frame = lines.get(i + 1).copied().unwrap_or("");
            if !frame.trim_start().starts_with("at sun.security.pkcs11.") {
                found.push(format!("{line} {}", frame.trim()));
            }
        }
    }
    found
}
