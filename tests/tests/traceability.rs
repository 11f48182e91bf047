//! The threat model must stay true.
//!
//! - `traceability.toml`: every threat has a mitigation, every code path it names exists and
//!   contains the named symbol, every test it names exists; `THREAT-MODEL.md` discusses every
//!   threat of the table.
//! - `THREAT-MODEL.md` and `MASVS.md`: every backticked `path::name` exists (the file, and in it
//!   `fn name()`, a proptest `fn name(x in …)`, `void name()` or the symbol), every backticked repository path exists, every
//!   threat id `T-…` they cite is in `traceability.toml`, every residual risk `R…` they cite is
//!   defined in `THREAT-MODEL.md` (a bold `**R…` item or a heading).
//! - `MASVS.md` lists every MASVS v2.1 control with its official title and one of four statuses;
//!   a Met row cites a threat id or a test, a Partly met row cites evidence and says what is
//!   missing, a Not applicable or Not met row gives its reason.
//! - `THREAT-MODEL.md` has one STRIDE table per data flow, each with the six letters, each
//!   letter treated by a threat id, a residual risk, or "Not applicable because …".
//!
//! There is no allow-list: a threat id cited before its entry exists in `traceability.toml`
//! fails the check until it is added.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct Table {
    threat: Vec<Threat>,
}

#[derive(serde::Deserialize)]
struct Threat {
    id: String,
    threat: String,
    mitigation: String,
    code: Vec<String>,
    tests: Vec<String>,
}

/// OWASP MASVS v2.1.0: every control and its statement.
const MASVS_CONTROLS: [(&str, &str); 24] = [
    ("MASVS-STORAGE-1", "The app securely stores sensitive data."),
    (
        "MASVS-STORAGE-2",
        "The app prevents leakage of sensitive data.",
    ),
    (
        "MASVS-CRYPTO-1",
        "The app employs current strong cryptography and uses it according to industry best practices.",
    ),
    (
        "MASVS-CRYPTO-2",
        "The app performs key management according to industry best practices.",
    ),
    (
        "MASVS-AUTH-1",
        "The app uses secure authentication and authorization protocols and follows the relevant best practices.",
    ),
    (
        "MASVS-AUTH-2",
        "The app performs local authentication securely according to the platform best practices.",
    ),
    (
        "MASVS-AUTH-3",
        "The app secures sensitive operations with additional authentication.",
    ),
    (
        "MASVS-NETWORK-1",
        "The app secures all network traffic according to the current best practices.",
    ),
    (
        "MASVS-NETWORK-2",
        "The app performs identity pinning for all remote endpoints under the developer's control.",
    ),
    ("MASVS-PLATFORM-1", "The app uses IPC mechanisms securely."),
    ("MASVS-PLATFORM-2", "The app uses WebViews securely."),
    (
        "MASVS-PLATFORM-3",
        "The app uses the user interface securely.",
    ),
    (
        "MASVS-CODE-1",
        "The app requires an up-to-date platform version.",
    ),
    (
        "MASVS-CODE-2",
        "The app has a mechanism for enforcing app updates.",
    ),
    (
        "MASVS-CODE-3",
        "The app only uses software components without known vulnerabilities.",
    ),
    (
        "MASVS-CODE-4",
        "The app validates and sanitizes all untrusted inputs.",
    ),
    (
        "MASVS-RESILIENCE-1",
        "The app validates the integrity of the platform.",
    ),
    (
        "MASVS-RESILIENCE-2",
        "The app implements anti-tampering mechanisms.",
    ),
    (
        "MASVS-RESILIENCE-3",
        "The app implements anti-static analysis mechanisms.",
    ),
    (
        "MASVS-RESILIENCE-4",
        "The app implements anti-dynamic analysis techniques.",
    ),
    (
        "MASVS-PRIVACY-1",
        "The app minimizes access to sensitive data and resources.",
    ),
    (
        "MASVS-PRIVACY-2",
        "The app prevents identification of the user.",
    ),
    (
        "MASVS-PRIVACY-3",
        "The app is transparent about data collection and usage.",
    ),
    (
        "MASVS-PRIVACY-4",
        "The app offers user control over their data.",
    ),
];

const MET: &str = "Met";
const PARTLY_MET: &str = "Partly met";
const NOT_APPLICABLE: &str = "Not applicable";
const NOT_MET_PLANNED: &str = "Not met (planned)";

/// The data flows of DESIGN §1, one STRIDE table each.
const DATA_FLOWS: usize = 8;

/// Top-level folders whose backticked paths must exist.
const REPOSITORY_DIRS: [&str; 6] = [
    "hsm/",
    "native/",
    "android/",
    "tests/",
    "threat-model/",
    ".ci/",
];

/// File name endings that make `x::y` a file reference rather than a Rust path.
const FILE_ENDINGS: [&str; 8] = [
    ".rs", ".java", ".xml", ".toml", ".kts", ".md", ".sh", ".pro",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn table() -> Table {
    toml::from_str(&read("threat-model/traceability.toml")).unwrap()
}

fn split(entry: &str) -> (&str, &str) {
    entry
        .split_once("::")
        .unwrap_or_else(|| panic!("entry {entry:?} is not `path::symbol`"))
}

/// Whether `src` defines a test named `name`: Rust `fn name()`, a proptest property
/// `fn name(x in strategy, …)` (inside `proptest!`), or JUnit `void name()`.
fn has_test(src: &str, name: &str) -> bool {
    let property = src
        .match_indices(&format!("fn {name}("))
        .any(|(at, found)| {
            let params = &src[at + found.len()..];
            params
                .split_once(')')
                .is_some_and(|(inside, _)| inside.contains(" in "))
        });
    property || src.contains(&format!("fn {name}()")) || src.contains(&format!("void {name}()"))
}

#[test]
fn every_threat_has_a_mitigation_existing_code_and_existing_tests() {
    let root = root();
    let table = table();
    assert!(table.threat.len() >= 20, "the table lost threats");
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for t in &table.threat {
        if !ids.insert(t.id.clone()) {
            problems.push(format!("{}: duplicate id", t.id));
        }
        if t.threat.trim().is_empty() || t.mitigation.trim().is_empty() {
            problems.push(format!("{}: threat or mitigation empty", t.id));
        }
        if t.code.is_empty() || t.tests.is_empty() {
            problems.push(format!("{}: no code or no test", t.id));
        }
        for entry in &t.code {
            let (path, symbol) = split(entry);
            match std::fs::read_to_string(root.join(path)) {
                Ok(src) if src.contains(symbol) => {}
                Ok(_) => problems.push(format!("{}: {path} does not contain {symbol:?}", t.id)),
                Err(_) => problems.push(format!("{}: no file {path}", t.id)),
            }
        }
        for entry in &t.tests {
            let (path, name) = split(entry);
            match std::fs::read_to_string(root.join(path)) {
                Ok(src) if has_test(&src, name) => {}
                Ok(_) => problems.push(format!("{}: no test fn {name} in {path}", t.id)),
                Err(_) => problems.push(format!("{}: no file {path}", t.id)),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "traceability table is out of date:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_threat_model_lists_every_threat_of_the_table() {
    let table = table();
    let model = read("threat-model/THREAT-MODEL.md");
    let missing: Vec<&str> = table
        .threat
        .iter()
        .map(|t| t.id.as_str())
        .filter(|id| !model.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "THREAT-MODEL.md does not discuss {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scanning the Markdown documents.

const DOCUMENTS: [&str; 2] = ["threat-model/THREAT-MODEL.md", "threat-model/MASVS.md"];

/// The inline code spans of a line (a span never wraps: checked by the caller).
fn code_spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// What a backticked span refers to.
enum Reference<'a> {
    /// `path::name`: a file, and a test or a symbol in it.
    Item { path: &'a str, name: &'a str },
    /// A path of the repository.
    Path(&'a str),
}

fn reference(span: &str) -> Option<Reference<'_>> {
    if let Some((path, name)) = span.split_once("::") {
        let file_like = !path.is_empty()
            && !path.contains(char::is_whitespace)
            && (path.contains('/') || FILE_ENDINGS.iter().any(|e| path.ends_with(e)));
        return file_like.then_some(Reference::Item { path, name });
    }
    let path_like = !span.contains(char::is_whitespace)
        && !span.contains("://")
        && REPOSITORY_DIRS.iter().any(|d| span.starts_with(d));
    path_like.then_some(Reference::Path(span))
}

/// How a `path::name` reference resolved.
#[derive(PartialEq, Debug)]
enum Resolved {
    Test,
    Symbol,
}

fn resolve(path: &str, name: &str) -> Result<Resolved, String> {
    let src = std::fs::read_to_string(root().join(path)).map_err(|_| format!("no file {path}"))?;
    if has_test(&src, name) {
        Ok(Resolved::Test)
    } else if src.contains(name) {
        Ok(Resolved::Symbol)
    } else {
        Err(format!(
            "{path} contains neither a test nor the symbol {name:?}"
        ))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Threat ids cited in `text`: `T-` then an upper-case family, `-`, digits (`T-E2E-01`).
fn threat_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if chars[i] != 'T'
            || chars.get(i + 1) != Some(&'-')
            || (i > 0 && (is_word_char(chars[i - 1]) || chars[i - 1] == '-'))
        {
            continue;
        }
        let mut j = i + 2;
        if !chars.get(j).is_some_and(char::is_ascii_uppercase) {
            continue;
        }
        while chars
            .get(j)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            j += 1;
        }
        if chars.get(j) != Some(&'-') {
            continue;
        }
        j += 1;
        let digits = j;
        while chars.get(j).is_some_and(char::is_ascii_digit) {
            j += 1;
        }
        if j > digits && !chars.get(j).copied().is_some_and(is_word_char) {
            ids.insert(chars[i..j].iter().collect());
        }
    }
    ids
}

/// Residual risk ids cited in `text`: `R` then digits, as a whole word (`R7`, not `RS7`).
fn risk_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if chars[i] != 'R' || (i > 0 && (is_word_char(chars[i - 1]) || chars[i - 1] == '-')) {
            continue;
        }
        let mut j = i + 1;
        while chars.get(j).is_some_and(char::is_ascii_digit) {
            j += 1;
        }
        if j > i + 1 && !chars.get(j).copied().is_some_and(is_word_char) {
            ids.insert(chars[i..j].iter().collect());
        }
    }
    ids
}

/// Residual risks defined in the threat model: a bold item `**R7 …**` or a heading `### R7 …`.
fn defined_risks(model: &str) -> BTreeSet<String> {
    let mut defined = BTreeSet::new();
    for line in model.lines() {
        let trimmed = line.trim_start();
        let heading = trimmed
            .starts_with('#')
            .then(|| trimmed.trim_start_matches('#'));
        let bold = line.split("**").skip(1).step_by(2);
        for candidate in heading.into_iter().chain(bold) {
            let candidate = candidate.trim_start();
            let digits: String = candidate
                .strip_prefix('R')
                .unwrap_or("")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let after = candidate.chars().nth(1 + digits.len());
            if !digits.is_empty() && !after.is_some_and(is_word_char) {
                defined.insert(format!("R{digits}"));
            }
        }
    }
    defined
}

#[test]
fn every_reference_and_id_in_the_documents_exists() {
    let table_ids: BTreeSet<String> = table().threat.into_iter().map(|t| t.id).collect();
    let risks = defined_risks(&read("threat-model/THREAT-MODEL.md"));
    assert!(
        (1..=8).all(|n| risks.contains(&format!("R{n}"))),
        "THREAT-MODEL.md lost residual risks R1–R8: defines {risks:?}"
    );
    let mut problems = Vec::new();
    let mut references = 0;
    for doc in DOCUMENTS {
        let text = read(doc);
        let mut in_fence = false;
        for (n, line) in text.lines().enumerate() {
            let at = format!("{doc}:{}", n + 1);
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                continue;
            }
            if line.matches('`').count() % 2 != 0 {
                problems.push(format!("{at}: a code span wraps or is unbalanced"));
                continue;
            }
            for span in code_spans(line) {
                match reference(span) {
                    Some(Reference::Item { path, name }) => {
                        references += 1;
                        if let Err(e) = resolve(path, name) {
                            problems.push(format!("{at}: `{span}`: {e}"));
                        }
                    }
                    Some(Reference::Path(path)) => {
                        references += 1;
                        if !root().join(path).exists() {
                            problems.push(format!("{at}: `{span}`: no such path"));
                        }
                    }
                    None => {}
                }
            }
            for id in threat_ids(line) {
                if !table_ids.contains(&id) {
                    problems.push(format!("{at}: {id} is not in traceability.toml"));
                }
            }
            for id in risk_ids(line) {
                if !risks.contains(&id) {
                    problems.push(format!("{at}: residual risk {id} is not defined"));
                }
            }
        }
    }
    assert!(references >= 20, "the documents lost their references");
    assert!(
        problems.is_empty(),
        "threat model documents cite what does not exist:\n{}",
        problems.join("\n")
    );
}

/// The cells of a Markdown table row, trimmed.
fn cells(row: &str) -> Vec<&str> {
    let row = row.trim();
    let inner = row
        .strip_prefix('|')
        .and_then(|r| r.strip_suffix('|'))
        .unwrap_or(row);
    inner.split('|').map(str::trim).collect()
}

#[test]
fn masvs_lists_every_control_with_a_status_and_its_evidence() {
    let text = read("threat-model/MASVS.md");
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for row in text.lines().filter(|l| l.starts_with("| MASVS-")) {
        let c = cells(row);
        let [control, title, status, evidence, notes] = c[..] else {
            problems.push(format!("{row:?}: expected 5 cells, found {}", c.len()));
            continue;
        };
        seen.push(control.to_owned());
        match MASVS_CONTROLS.iter().find(|(id, _)| *id == control) {
            None => problems.push(format!("{control}: not a MASVS v2 control")),
            Some((_, statement)) if *statement != title => problems.push(format!(
                "{control}: title {title:?} is not the control's statement {statement:?}"
            )),
            Some(_) => {}
        }
        let cited_ids = !threat_ids(evidence).is_empty();
        let mut tests = 0;
        let mut items = 0;
        for span in code_spans(evidence) {
            if let Some(Reference::Item { path, name }) = reference(span) {
                items += 1;
                if resolve(path, name) == Ok(Resolved::Test) {
                    tests += 1;
                }
            }
        }
        let has_reason = notes.chars().filter(|c| c.is_alphanumeric()).count() >= 20;
        match status {
            MET if !cited_ids && tests == 0 => {
                problems.push(format!("{control}: Met without a threat id or a test"));
            }
            PARTLY_MET if !cited_ids && items == 0 => {
                problems.push(format!("{control}: Partly met without evidence"));
            }
            PARTLY_MET | NOT_APPLICABLE | NOT_MET_PLANNED if !has_reason => {
                problems.push(format!("{control}: {status} without a reason"));
            }
            MET | PARTLY_MET | NOT_APPLICABLE | NOT_MET_PLANNED => {}
            other => problems.push(format!(
                "{control}: status {other:?} is not one of {MET:?}, {PARTLY_MET:?}, \
                 {NOT_APPLICABLE:?}, {NOT_MET_PLANNED:?}"
            )),
        }
    }
    for (id, _) in MASVS_CONTROLS {
        match seen.iter().filter(|s| *s == id).count() {
            1 => {}
            0 => problems.push(format!("{id}: missing")),
            n => problems.push(format!("{id}: listed {n} times")),
        }
    }
    assert!(
        problems.is_empty(),
        "MASVS.md is incomplete:\n{}",
        problems.join("\n")
    );
}

#[test]
fn stride_treats_every_letter_of_every_data_flow() {
    let text = read("threat-model/THREAT-MODEL.md");
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut tables = 0;
    for (start, header) in lines.iter().enumerate() {
        if cells(header).first() != Some(&"STRIDE") {
            continue;
        }
        tables += 1;
        let mut letters = Vec::new();
        for row in lines[start + 2..]
            .iter()
            .take_while(|l| l.trim_start().starts_with('|'))
        {
            let c = cells(row);
            let (Some(letter), Some(treatment)) = (c.first(), c.last()) else {
                continue;
            };
            letters.push(*letter);
            let treated = !threat_ids(treatment).is_empty()
                || !risk_ids(treatment).is_empty()
                || treatment.contains("Not applicable because");
            if !treated {
                problems.push(format!(
                    "line {}: {letter}: no threat id, residual risk or \"Not applicable because\"",
                    start + 1
                ));
            }
        }
        if letters != ["S", "T", "R", "I", "D", "E"] {
            problems.push(format!(
                "line {}: letters {letters:?}, expected S T R I D E once each",
                start + 1
            ));
        }
    }
    if tables != DATA_FLOWS {
        problems.push(format!(
            "{tables} STRIDE tables, expected {DATA_FLOWS} (DESIGN §1)"
        ));
    }
    assert!(
        problems.is_empty(),
        "STRIDE analysis is incomplete:\n{}",
        problems.join("\n")
    );
}
