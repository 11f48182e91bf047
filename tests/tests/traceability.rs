//! The threat model must stay true.
//!
//! - `traceability.toml`: every threat has a mitigation, a code entry and a test entry; every
//!   test entry names a test that runs and every code entry names an item that is defined (the
//!   rules below); `THREAT-MODEL.md` discusses every threat of the table.
//! - `THREAT-MODEL.md` and `MASVS.md`: every backticked `path::name` exists (a test as below, an
//!   item as below, or at least code — not a comment — of that file containing `name`), every
//!   backticked repository path exists, every threat id `T-…` they cite is in
//!   `traceability.toml`, every residual risk `R…` they cite is defined in `THREAT-MODEL.md` (a
//!   bold `**R…` item or a heading). A MASVS row counts a reference as a test only if it is one.
//! - `MASVS.md` lists every MASVS v2.1 control with its official title and one of four statuses;
//!   a Met row cites a threat id or a test, a Partly met row cites evidence and says what is
//!   missing, a Not applicable or Not met row gives its reason.
//! - `THREAT-MODEL.md` has one STRIDE table per data flow, each with the six letters, each
//!   letter treated by a threat id, a residual risk, or "Not applicable because …".
//!
//! **What a cited test must be.** The match is on a definition, never on a comment, a string,
//! a `use` line or a call (the files are lexed: comments dropped, literals opaque).
//! - Rust: a `fn name(` whose outer attributes (those written just above it, doc comments,
//!   `#[cfg_attr]` and qualifiers such as `async` in between) include `#[test]` or a
//!   `#[….::test]` (`#[tokio::test(…)]`), and no `#[ignore]`, `#[ignore = "…"]` or
//!   `#[cfg_attr(…, ignore)]`. A property of a `proptest!` block (`fn name(x in …)`) is a test
//!   the same way: `proptest!` passes its attributes through, and without `#[test]` it makes a
//!   plain function.
//! - Java: a method `void name(` annotated `@Test` (`@org.junit.Test`), neither it nor its class
//!   annotated `@Ignore` or `@Disabled`.
//!
//! **What a cited code item must be** (`code = ["path::symbol"]`).
//! - Rust: the name of an item the file defines — `fn`, `struct`, `enum`, `union`, `trait`,
//!   `type`, `const`, `static`, `mod`, `macro_rules!`, the target type of an `impl`, an enum
//!   variant or a named field; `Parent::name` when the item must be inside `Parent` (an `impl`
//!   or `trait` item, a variant, a field, an item of a `mod` or nested in a `fn`); `name!` for a
//!   macro invoked where items go (`compile_error!`, `fuzz_target!`). A call, a string such as a
//!   log message or a SQL pragma, or an attribute is not an item: cite the `fn` that does it.
//! - Java: a class, interface, enum or record; a method or constructor; a field or enum
//!   constant of a class body (`Class.member` to name the class).
//! - XML: an element or attribute name outside comments (with or without its namespace
//!   prefix), or `attribute=value` for an attribute with that value.
//! - TOML: a key (of a line, an inline table or a table header) or a string value, outside
//!   comments.
//! - Shell scripts and Gradle files: text of the code outside comments (a script has no items;
//!   what is cited is what it runs).
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

/// The data flows, one STRIDE table each: the eight of DESIGN §1, and the core ↔ identity
/// server flow issue 19 added (F9).
const DATA_FLOWS: usize = 9;

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

/// Whether the file `path` defines a test `name` that runs (see the module doc).
fn has_test(path: &str, src: &str, name: &str) -> bool {
    scan::has_test(scan::lang_of(path), src, name)
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
                Ok(src) if scan::defines(scan::lang_of(path), &src, symbol) => {}
                Ok(_) => problems.push(format!("{}: {path} does not define {symbol:?}", t.id)),
                Err(_) => problems.push(format!("{}: no file {path}", t.id)),
            }
        }
        for entry in &t.tests {
            let (path, name) = split(entry);
            match std::fs::read_to_string(root.join(path)) {
                Ok(src) if has_test(path, &src, name) => {}
                Ok(_) => problems.push(format!(
                    "{}: {path} has no test {name} that runs (#[test]/@Test, not ignored)",
                    t.id
                )),
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
    let lang = scan::lang_of(path);
    if has_test(path, &src, name) {
        Ok(Resolved::Test)
    } else if scan::defines(lang, &src, name) || scan::in_code(lang, &src, name) {
        Ok(Resolved::Symbol)
    } else {
        Err(format!(
            "{path} has neither a test nor code (outside comments) with {name:?}"
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
            "{tables} STRIDE tables, expected {DATA_FLOWS} (DESIGN §1 and F9)"
        ));
    }
    assert!(
        problems.is_empty(),
        "STRIDE analysis is incomplete:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The scanner: what a cited test or code item must be, per kind of file (rules in the module doc).

/// Source scanners for the checks above: a small lexer for Rust and Java (comments dropped,
/// literals kept as one token), item and test finders on its tokens, and the rules for XML,
/// TOML and scripts.
mod scan {
    /// The language of a cited file, from its name.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(crate) enum Lang {
        Rust,
        Java,
        Xml,
        Toml,
        /// Shell scripts: `#` comments.
        Shell,
        /// Kotlin (Gradle `.kts`) and ProGuard-like files: `//` and `/* */` comments.
        CLike,
        /// Markdown and anything else: no comments.
        Text,
    }

    pub(crate) fn lang_of(path: &str) -> Lang {
        let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
        match ext {
            "rs" => Lang::Rust,
            "java" => Lang::Java,
            "xml" => Lang::Xml,
            "toml" => Lang::Toml,
            "sh" | "pro" => Lang::Shell,
            "kts" | "kt" => Lang::CLike,
            _ => Lang::Text,
        }
    }

    /// Whether `src` (the file `path`) defines a test `name` that runs: see the module doc.
    pub(crate) fn has_test(lang: Lang, src: &str, name: &str) -> bool {
        match lang {
            Lang::Rust => rust_test(&lex(src, Lang::Rust), name),
            Lang::Java => java_test(&lex(src, Lang::Java), name),
            _ => false,
        }
    }

    /// Whether `src` defines the item `symbol` (table `code` entries): see the module doc.
    pub(crate) fn defines(lang: Lang, src: &str, symbol: &str) -> bool {
        match lang {
            Lang::Rust => rust_defines(&lex(src, Lang::Rust), symbol),
            Lang::Java => java_defines(&lex(src, Lang::Java), symbol),
            Lang::Xml => xml_defines(src, symbol),
            Lang::Toml => toml_defines(src, symbol),
            Lang::Shell | Lang::CLike | Lang::Text => in_code(lang, src, symbol),
        }
    }

    /// Whether `symbol` occurs in `src` outside comments (documents' `path::symbol` references:
    /// code a document points at, such as an attribute or a call, not only a definition).
    pub(crate) fn in_code(lang: Lang, src: &str, symbol: &str) -> bool {
        without_comments(lang, src).contains(symbol)
    }

    /// `src` with its comments replaced by spaces (string literals kept).
    pub(crate) fn without_comments(lang: Lang, src: &str) -> String {
        match lang {
            Lang::Rust | Lang::Java | Lang::CLike => {
                let mut out = String::with_capacity(src.len());
                for (piece, is_comment) in c_like_pieces(src, lang) {
                    if is_comment {
                        out.push(' ');
                    } else {
                        out.push_str(piece);
                    }
                }
                out
            }
            Lang::Xml => strip_xml_comments(src),
            Lang::Toml | Lang::Shell => src
                .lines()
                .map(|l| hash_comment_free(l, lang))
                .collect::<Vec<_>>()
                .join("\n"),
            Lang::Text => src.to_owned(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Lexer (Rust and Java).

    /// A token: comments are dropped, a literal's contents are not inspected.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub(crate) enum Tok {
        /// An identifier or keyword (`r#x` as `x`).
        Ident(String),
        /// A string, character or number literal.
        Lit,
        /// `->`, kept apart so that `>` counts generics only.
        Arrow,
        /// Any other single character of punctuation.
        Punct(char),
    }

    fn is_ident_start(c: char) -> bool {
        c.is_alphabetic() || c == '_'
    }

    fn is_ident_char(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    /// The source cut into code and comment pieces, in order (for `without_comments`).
    fn c_like_pieces(src: &str, lang: Lang) -> Vec<(&str, bool)> {
        let mut pieces = Vec::new();
        let mut start = 0;
        walk(src, lang, |span, kind| {
            if kind == Span::Comment {
                if start < span.0 {
                    pieces.push((&src[start..span.0], false));
                }
                pieces.push((&src[span.0..span.1], true));
                start = span.1;
            }
        });
        if start < src.len() {
            pieces.push((&src[start..], false));
        }
        pieces
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Span {
        Comment,
        Lit,
        Ident,
        Arrow,
        Punct,
    }

    /// Walks `src`, calling `f` with the byte span and kind of every comment, literal,
    /// identifier and punctuation character.
    fn walk(src: &str, lang: Lang, mut f: impl FnMut((usize, usize), Span)) {
        let chars: Vec<(usize, char)> = src.char_indices().collect();
        let at = |i: usize| chars.get(i).map(|&(_, c)| c);
        let offset = |i: usize| chars.get(i).map_or(src.len(), |&(o, _)| o);
        let rust = lang == Lang::Rust;
        let mut i = 0;
        while let Some(c) = at(i) {
            let start = i;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if c == '/' && at(i + 1) == Some('/') {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
                f((offset(start), offset(i)), Span::Comment);
                continue;
            }
            if c == '/' && at(i + 1) == Some('*') {
                let mut depth = 0usize;
                while let Some(c) = at(i) {
                    if c == '/' && at(i + 1) == Some('*') && (rust || depth == 0) {
                        depth += 1;
                        i += 2;
                    } else if c == '*' && at(i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                f((offset(start), offset(i)), Span::Comment);
                continue;
            }
            if c == '"' {
                i = skip_string(&chars, i, lang);
                f((offset(start), offset(i)), Span::Lit);
                continue;
            }
            if c == '\'' {
                // A character literal ('a', '\n', '\u{1F600}'), or in Rust a lifetime or label.
                if at(i + 1) == Some('\\') {
                    i += 2;
                    while at(i).is_some_and(|c| c != '\'') {
                        i += 1;
                    }
                    i += 1;
                    f((offset(start), offset(i)), Span::Lit);
                } else if at(i + 2) == Some('\'') || !rust {
                    i += 3;
                    f((offset(start), offset(i)), Span::Lit);
                } else {
                    i += 1;
                    f((offset(start), offset(i)), Span::Punct);
                }
                continue;
            }
            if c.is_ascii_digit() {
                while at(i).is_some_and(|c| {
                    is_ident_char(c) || c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())
                }) {
                    i += 1;
                }
                f((offset(start), offset(i)), Span::Lit);
                continue;
            }
            if is_ident_start(c) {
                while at(i).is_some_and(is_ident_char) {
                    i += 1;
                }
                let word = &src[offset(start)..offset(i)];
                if rust && matches!(word, "r" | "br" | "cr") && matches!(at(i), Some('"' | '#')) {
                    // A raw string r#"…"#, unless it is a raw identifier r#name.
                    let mut hashes = 0;
                    while at(i + hashes) == Some('#') {
                        hashes += 1;
                    }
                    if at(i + hashes) == Some('"') {
                        i += hashes + 1;
                        loop {
                            match at(i) {
                                None => break,
                                Some('"') if (1..=hashes).all(|k| at(i + k) == Some('#')) => {
                                    i += hashes + 1;
                                    break;
                                }
                                Some(_) => i += 1,
                            }
                        }
                        f((offset(start), offset(i)), Span::Lit);
                        continue;
                    }
                    if word == "r" && hashes == 1 {
                        let name = i + 1;
                        i = name;
                        while at(i).is_some_and(is_ident_char) {
                            i += 1;
                        }
                        f((offset(name), offset(i)), Span::Ident);
                        continue;
                    }
                }
                if rust && matches!(word, "b" | "c") && at(i) == Some('"') {
                    i = skip_string(&chars, i, lang);
                    f((offset(start), offset(i)), Span::Lit);
                    continue;
                }
                if rust && word == "b" && at(i) == Some('\'') {
                    i += if at(i + 1) == Some('\\') { 2 } else { 1 };
                    while at(i).is_some_and(|c| c != '\'') {
                        i += 1;
                    }
                    i += 1;
                    f((offset(start), offset(i)), Span::Lit);
                    continue;
                }
                f((offset(start), offset(i)), Span::Ident);
                continue;
            }
            if c == '-' && at(i + 1) == Some('>') {
                i += 2;
                f((offset(start), offset(i)), Span::Arrow);
                continue;
            }
            i += 1;
            f((offset(start), offset(i)), Span::Punct);
        }
    }

    /// The index just past the string literal that starts at `i` (a Java text block too).
    fn skip_string(chars: &[(usize, char)], mut i: usize, lang: Lang) -> usize {
        let at = |i: usize| chars.get(i).map(|&(_, c)| c);
        if lang == Lang::Java && at(i + 1) == Some('"') && at(i + 2) == Some('"') {
            i += 3;
            while at(i).is_some()
                && !(at(i) == Some('"') && at(i + 1) == Some('"') && at(i + 2) == Some('"'))
            {
                i += if at(i) == Some('\\') { 2 } else { 1 };
            }
            return (i + 3).min(chars.len());
        }
        i += 1;
        while let Some(c) = at(i) {
            match c {
                '\\' => i += 2,
                '"' => return i + 1,
                _ => i += 1,
            }
        }
        chars.len()
    }

    pub(crate) fn lex(src: &str, lang: Lang) -> Vec<Tok> {
        let mut toks = Vec::new();
        walk(src, lang, |(from, to), kind| match kind {
            Span::Comment => {}
            Span::Lit => toks.push(Tok::Lit),
            Span::Arrow => toks.push(Tok::Arrow),
            Span::Ident => toks.push(Tok::Ident(src[from..to].to_owned())),
            Span::Punct => toks.extend(src[from..to].chars().next().map(Tok::Punct)),
        });
        toks
    }

    fn ident(t: Option<&Tok>) -> Option<&str> {
        match t {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn is_punct(t: Option<&Tok>, c: char) -> bool {
        t == Some(&Tok::Punct(c))
    }

    /// The index of the token that opens the group closed at `close` (`]`, `)`, `}`), scanning
    /// back.
    fn opening(toks: &[Tok], close: usize) -> Option<usize> {
        let (open, shut) = match toks.get(close)? {
            Tok::Punct(']') => ('[', ']'),
            Tok::Punct(')') => ('(', ')'),
            Tok::Punct('}') => ('{', '}'),
            _ => return None,
        };
        let mut depth = 0usize;
        for j in (0..=close).rev() {
            if toks[j] == Tok::Punct(shut) {
                depth += 1;
            } else if toks[j] == Tok::Punct(open) {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
        }
        None
    }

    /// The index just past the group opened at `open` (`[`, `(`, `{`).
    fn closing(toks: &[Tok], open: usize) -> usize {
        let (o, c) = match toks.get(open) {
            Some(Tok::Punct('[')) => ('[', ']'),
            Some(Tok::Punct('(')) => ('(', ')'),
            Some(Tok::Punct('{')) => ('{', '}'),
            _ => return open + 1,
        };
        let mut depth = 0usize;
        for (j, t) in toks.iter().enumerate().skip(open) {
            if *t == Tok::Punct(o) {
                depth += 1;
            } else if *t == Tok::Punct(c) {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
        }
        toks.len()
    }

    // -----------------------------------------------------------------------------------------
    // Rust.

    /// The outer attributes written just before the item whose keyword is at `item` (qualifiers
    /// such as `pub(crate) async unsafe` skipped), each as its tokens inside `#[…]`.
    fn rust_attributes(toks: &[Tok], item: usize) -> Vec<&[Tok]> {
        const QUALIFIERS: [&str; 8] = [
            "pub", "crate", "super", "in", "async", "unsafe", "const", "extern",
        ];
        let mut attributes = Vec::new();
        let mut j = item;
        while let Some(prev) = j.checked_sub(1) {
            match &toks[prev] {
                Tok::Ident(q) if QUALIFIERS.contains(&q.as_str()) => j = prev,
                Tok::Lit | Tok::Punct('(' | ')') => j = prev, // extern "C", pub(crate)
                Tok::Punct(']') => match opening(toks, prev) {
                    Some(open) if open > 0 && is_punct(toks.get(open - 1), '#') => {
                        attributes.push(&toks[open + 1..prev]);
                        j = open - 1;
                    }
                    _ => break,
                },
                _ => break,
            }
        }
        attributes
    }

    /// The path of an attribute (`tokio::test` of `#[tokio::test(flavor = "multi_thread")]`).
    fn attribute_path(attribute: &[Tok]) -> String {
        let mut path = String::new();
        for t in attribute {
            match t {
                Tok::Ident(s) => path.push_str(s),
                Tok::Punct(':') => path.push(':'),
                _ => break,
            }
        }
        path
    }

    fn is_test_attribute(attribute: &[Tok]) -> bool {
        let path = attribute_path(attribute);
        path == "test" || path.ends_with("::test")
    }

    /// `#[ignore]`, `#[ignore = "…"]`, or `#[cfg_attr(…, ignore)]` (ignored in some builds).
    fn is_ignore_attribute(attribute: &[Tok]) -> bool {
        match attribute_path(attribute).as_str() {
            "ignore" => true,
            "cfg_attr" => attribute.iter().any(|t| *t == Tok::Ident("ignore".into())),
            _ => false,
        }
    }

    /// Whether the tokens define a Rust test `name` that is not ignored: `fn name(` (a
    /// definition, not a call: `fn` before it) with a `#[test]` or `#[…::test]` attribute among
    /// those written just before it, and no `#[ignore]`.
    pub(crate) fn rust_test(toks: &[Tok], name: &str) -> bool {
        rust_fns(toks, name).any(|at| {
            let attributes = rust_attributes(toks, at);
            attributes.iter().any(|a| is_test_attribute(a))
                && !attributes.iter().any(|a| is_ignore_attribute(a))
        })
    }

    /// The indices of the `fn` keywords defining `name`.
    fn rust_fns<'t>(toks: &'t [Tok], name: &'t str) -> impl Iterator<Item = usize> + 't {
        (0..toks.len()).filter(move |&i| {
            ident(toks.get(i)) == Some("fn")
                && ident(toks.get(i + 1)) == Some(name)
                && matches!(toks.get(i + 2), Some(Tok::Punct('(' | '<')))
        })
    }

    /// What a brace opens, for naming the items defined inside it.
    #[derive(Clone, PartialEq, Eq, Debug)]
    enum Body {
        /// The file, a `mod`, an `impl` (its target type), a `trait`: items.
        Items(Option<String>),
        /// A function body: items may be nested, macro invocations are statements.
        Function(String),
        /// A struct (or struct-like variant): named fields.
        Fields(String),
        /// An enum: variants.
        Variants(String),
        /// Anything else (blocks, struct literals, `extern` blocks, macro bodies).
        Other,
    }

    impl Body {
        fn name(&self) -> Option<&str> {
            match self {
                Body::Items(n) => n.as_deref(),
                Body::Function(n) | Body::Fields(n) | Body::Variants(n) => Some(n),
                Body::Other => None,
            }
        }
    }

    /// A defined item: its name and the name of the item it is defined in, if any.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub(crate) struct Def {
        pub(crate) name: String,
        pub(crate) parent: Option<String>,
    }

    /// The target type of the `impl` at `at`: the last path segment of the type after `for`,
    /// or of the type itself, generics skipped.
    fn impl_target(toks: &[Tok], at: usize) -> Option<String> {
        let mut angle = 0i32;
        let mut last = None;
        let mut j = at + 1;
        while let Some(t) = toks.get(j) {
            match t {
                Tok::Punct('<') => angle += 1,
                Tok::Punct('>') => angle -= 1,
                Tok::Punct('{' | ';') if angle == 0 => break,
                Tok::Ident(s) if angle == 0 && s == "where" => break,
                Tok::Ident(s) if angle == 0 && s == "for" => last = None,
                Tok::Ident(s) if angle == 0 && !matches!(s.as_str(), "dyn" | "mut" | "unsafe") => {
                    last = Some(s.clone());
                }
                _ => {}
            }
            j += 1;
        }
        last
    }

    /// Whether the token at `i` can start an item: the file's start, or after an item, a block
    /// opening, an attribute or a visibility (`pub`, `pub(crate)`, `unsafe`, `default`).
    fn item_boundary(toks: &[Tok], i: usize) -> bool {
        let Some(prev) = i.checked_sub(1) else {
            return true;
        };
        match &toks[prev] {
            Tok::Punct('}' | ';' | '{' | ']') => true,
            Tok::Ident(q) => matches!(q.as_str(), "pub" | "unsafe" | "default"),
            Tok::Punct(')') => opening(toks, prev)
                .and_then(|o| o.checked_sub(1))
                .is_some_and(|p| ident(toks.get(p)) == Some("pub")),
            _ => false,
        }
    }

    /// The index of the first segment of the path that ends with the identifier at `i`
    /// (`a::b::name` → the index of `a`).
    fn path_start(toks: &[Tok], mut i: usize) -> usize {
        while i >= 3
            && is_punct(toks.get(i - 1), ':')
            && is_punct(toks.get(i - 2), ':')
            && ident(toks.get(i - 3)).is_some()
        {
            i -= 3;
        }
        i
    }

    /// Every item the tokens define (see the module doc for what counts).
    pub(crate) fn rust_defs(toks: &[Tok]) -> Vec<Def> {
        let mut defs = Vec::new();
        let mut stack: Vec<(Body, usize)> = vec![(Body::Items(None), 0)];
        // What the next `{` opens, and the bracket depth at which it was announced.
        let mut pending: Option<(Body, usize)> = None;
        let mut brackets = 0usize; // ( and [ open
        let mut angle = 0i32; // < open inside a field list
        let mut entry_start = false;
        let mut i = 0;
        while i < toks.len() {
            let parent = stack.last().and_then(|(b, _)| b.name().map(str::to_owned));
            let body = stack.last().map_or(Body::Other, |(b, _)| b.clone());
            let at_item_boundary = item_boundary(toks, i);
            // Fields and variants: the first identifier of an entry.
            if entry_start && matches!(body, Body::Fields(_) | Body::Variants(_)) {
                match &toks[i] {
                    Tok::Punct('#') if is_punct(toks.get(i + 1), '[') => {
                        i = closing(toks, i + 1);
                        continue;
                    }
                    Tok::Ident(p) if p == "pub" => {
                        i += if is_punct(toks.get(i + 1), '(') {
                            closing(toks, i + 1) - i
                        } else {
                            1
                        };
                        continue;
                    }
                    Tok::Ident(name) => {
                        entry_start = false;
                        let next = toks.get(i + 1);
                        let field = is_punct(next, ':') && !is_punct(toks.get(i + 2), ':');
                        if matches!(body, Body::Variants(_)) || field {
                            defs.push(Def {
                                name: name.clone(),
                                parent: parent.clone(),
                            });
                        }
                        if matches!(body, Body::Variants(_)) && is_punct(next, '{') {
                            pending = Some((Body::Fields(name.clone()), brackets));
                        }
                        i += 1;
                        continue;
                    }
                    _ => entry_start = false,
                }
            }
            match &toks[i] {
                Tok::Ident(kw) => {
                    let kw = kw.as_str();
                    let mut name_at = i + 1;
                    if kw == "static" && ident(toks.get(name_at)) == Some("mut") {
                        name_at += 1;
                    }
                    let name = ident(toks.get(name_at)).map(str::to_owned);
                    match (kw, name) {
                        ("const", Some(n)) if n == "fn" || n == "unsafe" || n == "async" => {}
                        (
                            "fn" | "struct" | "enum" | "union" | "trait" | "mod" | "type" | "const"
                            | "static",
                            Some(n),
                        ) if n != "_" => {
                            let opens = match kw {
                                "fn" => Some(Body::Function(n.clone())),
                                "struct" | "union" => Some(Body::Fields(n.clone())),
                                "enum" => Some(Body::Variants(n.clone())),
                                "trait" | "mod" => Some(Body::Items(Some(n.clone()))),
                                _ => None,
                            };
                            let after = toks.get(name_at + 1);
                            let shaped = match kw {
                                "fn" => matches!(after, Some(Tok::Punct('(' | '<'))),
                                "const" | "static" => is_punct(after, ':'),
                                "type" => matches!(after, Some(Tok::Punct('=' | '<' | ':' | ';'))),
                                _ => true,
                            };
                            // Not 'static (a lifetime) nor *const T (a pointer type).
                            let typed = i > 0 && matches!(toks[i - 1], Tok::Punct('\'' | '*'));
                            if shaped && !typed {
                                defs.push(Def {
                                    name: n,
                                    parent: parent.clone(),
                                });
                                pending = opens.map(|b| (b, brackets));
                            }
                            i = name_at + 1;
                            continue;
                        }
                        ("macro_rules", _) if is_punct(toks.get(i + 1), '!') => {
                            if let Some(n) = ident(toks.get(i + 2)) {
                                defs.push(Def {
                                    name: n.to_owned(),
                                    parent: parent.clone(),
                                });
                            }
                            pending = Some((Body::Other, brackets));
                            i += 3;
                            continue;
                        }
                        ("impl", _) if at_item_boundary => {
                            let target = impl_target(toks, i);
                            if let Some(t) = &target {
                                defs.push(Def {
                                    name: t.clone(),
                                    parent: parent.clone(),
                                });
                            }
                            pending = Some((Body::Items(target), brackets));
                        }
                        (m, _)
                            if is_punct(toks.get(i + 1), '!')
                                && item_boundary(toks, path_start(toks, i))
                                && matches!(body, Body::Items(_)) =>
                        {
                            // A macro invoked where items are (compile_error!, fuzz_target!).
                            defs.push(Def {
                                name: format!("{m}!"),
                                parent: parent.clone(),
                            });
                        }
                        _ => {}
                    }
                }
                Tok::Punct('{') => {
                    let opened = pending.take().map_or(Body::Other, |(b, _)| b);
                    entry_start = matches!(opened, Body::Fields(_) | Body::Variants(_));
                    stack.push((opened, brackets));
                    angle = 0;
                }
                Tok::Punct('}') => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    pending = None;
                }
                Tok::Punct('(' | '[') => brackets += 1,
                Tok::Punct(')' | ']') => brackets = brackets.saturating_sub(1),
                Tok::Punct('<') => angle += 1,
                Tok::Punct('>') => angle -= 1,
                Tok::Punct(';') if pending.as_ref().is_some_and(|(_, b)| *b == brackets) => {
                    pending = None;
                }
                Tok::Punct(',') => {
                    let level = stack.last().map_or(0, |(_, b)| *b);
                    if brackets == level && angle <= 0 {
                        entry_start = true;
                        angle = 0;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        defs
    }

    /// Whether `symbol` names an item of the tokens: `name`, `Parent::name` (an item of an
    /// `impl`, `trait` or `mod`, a variant, a field), or `name!` (a macro invoked as an item).
    pub(crate) fn rust_defines(toks: &[Tok], symbol: &str) -> bool {
        let (parent, name) = match symbol.rsplit_once("::") {
            Some((p, n)) => (Some(p.rsplit("::").next().unwrap_or(p)), n),
            None => (None, symbol),
        };
        rust_defs(toks)
            .iter()
            .any(|d| d.name == name && (parent.is_none() || d.parent.as_deref() == parent))
    }

    // -----------------------------------------------------------------------------------------
    // Java.

    const JAVA_MODIFIERS: [&str; 10] = [
        "public",
        "protected",
        "private",
        "static",
        "final",
        "abstract",
        "synchronized",
        "native",
        "default",
        "strictfp",
    ];

    /// The annotations written before the declaration that starts at `at` (modifiers skipped),
    /// each as its simple name (`Test` of `@org.junit.Test`).
    fn java_annotations(toks: &[Tok], at: usize) -> Vec<String> {
        let mut names = Vec::new();
        let mut j = at;
        while let Some(prev) = j.checked_sub(1) {
            match &toks[prev] {
                Tok::Ident(m) if JAVA_MODIFIERS.contains(&m.as_str()) => j = prev,
                Tok::Punct('>') => {
                    // <T> void name(…): the type parameters.
                    let mut depth = 0usize;
                    let mut k = prev;
                    loop {
                        match toks.get(k) {
                            Some(Tok::Punct('>')) => depth += 1,
                            Some(Tok::Punct('<')) => depth -= 1,
                            None => break,
                            _ => {}
                        }
                        if depth == 0 || k == 0 {
                            break;
                        }
                        k -= 1;
                    }
                    if depth != 0 {
                        break;
                    }
                    j = k;
                }
                Tok::Punct(')') => {
                    // @Test(timeout = 1000): the arguments, then the name.
                    match opening(toks, prev) {
                        Some(open) => j = open,
                        None => break,
                    }
                }
                Tok::Ident(name) => {
                    // @a.b.Name: walk back over the dotted path to the @.
                    let mut k = prev;
                    while k >= 2
                        && is_punct(toks.get(k - 1), '.')
                        && ident(toks.get(k - 2)).is_some()
                    {
                        k -= 2;
                    }
                    if k >= 1 && is_punct(toks.get(k - 1), '@') {
                        names.push(name.clone());
                        j = k - 1;
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
        names
    }

    fn java_ignored(annotations: &[String]) -> bool {
        annotations.iter().any(|a| a == "Ignore" || a == "Disabled")
    }

    /// Whether the tokens define a JUnit test `name`: `void name(` annotated `@Test`, neither
    /// the method nor its class annotated `@Ignore` or `@Disabled`.
    pub(crate) fn java_test(toks: &[Tok], name: &str) -> bool {
        let class_ignored = (0..toks.len()).any(|i| {
            ident(toks.get(i)) == Some("class") && java_ignored(&java_annotations(toks, i))
        });
        !class_ignored
            && (0..toks.len()).any(|i| {
                ident(toks.get(i)) == Some("void")
                    && ident(toks.get(i + 1)) == Some(name)
                    && is_punct(toks.get(i + 2), '(')
                    && {
                        let annotations = java_annotations(toks, i);
                        annotations.iter().any(|a| a == "Test") && !java_ignored(&annotations)
                    }
            })
    }

    /// Whether `symbol` is declared by the Java tokens: a class, interface, enum or record; a
    /// method or constructor (`name(…)` after a type or modifier, followed by `{`, `throws` or
    /// `;`); a field or enum constant of a class body. `Class.member` requires the member to be
    /// declared in that class's body.
    pub(crate) fn java_defines(toks: &[Tok], symbol: &str) -> bool {
        let (parent, name) = match symbol.rsplit_once('.') {
            Some((p, n)) => (Some(p), n),
            None => (None, symbol),
        };
        java_defs(toks)
            .iter()
            .any(|d| d.name == name && (parent.is_none() || d.parent.as_deref() == parent))
    }

    pub(crate) fn java_defs(toks: &[Tok]) -> Vec<Def> {
        const NOT_A_TYPE: [&str; 11] = [
            "new",
            "return",
            "throw",
            "throws",
            "else",
            "case",
            "yield",
            "assert",
            "instanceof",
            "extends",
            "implements",
        ];
        let mut defs = Vec::new();
        // Each open brace: the class whose body it is, if it is one.
        let mut stack: Vec<(Option<String>, usize)> = Vec::new();
        let mut parens = 0usize; // ( open: parameters are not fields
        let mut pending_class: Option<String> = None;
        let mut enum_start = false;
        for i in 0..toks.len() {
            let class = stack
                .last()
                .and_then(|(c, p)| c.clone().filter(|_| *p == parens));
            match &toks[i] {
                Tok::Ident(kw)
                    if matches!(kw.as_str(), "class" | "interface" | "enum" | "record") =>
                {
                    if let Some(n) = ident(toks.get(i + 1)) {
                        defs.push(Def {
                            name: n.to_owned(),
                            parent: class.clone(),
                        });
                        pending_class = Some(n.to_owned());
                        enum_start = kw == "enum";
                    }
                }
                Tok::Punct('{') => {
                    let opened = pending_class.take();
                    if enum_start && opened.is_some() {
                        // Enum constants: identifiers up to the first `;` at this level.
                        let mut j = i + 1;
                        let mut expect = true;
                        while let Some(t) = toks.get(j) {
                            match t {
                                Tok::Punct(';' | '}') => break,
                                Tok::Punct('(' | '{') => {
                                    j = closing(toks, j);
                                    continue;
                                }
                                Tok::Punct(',') => expect = true,
                                Tok::Ident(c) if expect => {
                                    defs.push(Def {
                                        name: c.clone(),
                                        parent: opened.clone(),
                                    });
                                    expect = false;
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                    }
                    enum_start = false;
                    stack.push((opened, parens));
                }
                Tok::Punct('}') => {
                    stack.pop();
                }
                Tok::Punct(';') => {
                    pending_class = None;
                }
                Tok::Punct('(') => parens += 1,
                Tok::Punct(')') => parens = parens.saturating_sub(1),
                Tok::Ident(n) if class.is_some() && i > 0 => {
                    let typed = match &toks[i - 1] {
                        Tok::Ident(t) => !NOT_A_TYPE.contains(&t.as_str()),
                        Tok::Punct('>' | ']') => true,
                        _ => false,
                    };
                    if !typed {
                        continue;
                    }
                    let declared = match toks.get(i + 1) {
                        Some(Tok::Punct('(')) => {
                            let after = closing(toks, i + 1);
                            is_punct(toks.get(after), '{')
                                || is_punct(toks.get(after), ';')
                                || ident(toks.get(after)) == Some("throws")
                        }
                        Some(Tok::Punct('=' | ';' | ',')) => true,
                        _ => false,
                    };
                    if declared {
                        defs.push(Def {
                            name: n.clone(),
                            parent: class.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        defs
    }

    // -----------------------------------------------------------------------------------------
    // XML, TOML, scripts.

    fn strip_xml_comments(src: &str) -> String {
        let mut out = String::with_capacity(src.len());
        let mut rest = src;
        while let Some(start) = rest.find("<!--") {
            out.push_str(&rest[..start]);
            out.push(' ');
            rest = rest[start..]
                .find("-->")
                .map_or("", |end| &rest[start + end + 3..]);
        }
        out.push_str(rest);
        out
    }

    /// The element and attribute names of an XML document outside comments, each attribute
    /// with its value.
    fn xml_names(src: &str) -> Vec<(String, Option<String>)> {
        let src = strip_xml_comments(src);
        let mut names = Vec::new();
        for tag in src.split('<').skip(1) {
            if tag.starts_with(['/', '?', '!']) {
                continue;
            }
            let tag = tag.split('>').next().unwrap_or("");
            let element_end = tag
                .find(|c: char| c.is_whitespace() || c == '/')
                .unwrap_or(tag.len());
            names.push((tag[..element_end].to_owned(), None));
            // attributes: name="value" or name='value'
            let mut rest = &tag[element_end..];
            while let Some(eq) = rest.find('=') {
                let attr = rest[..eq].trim().to_owned();
                let after = rest[eq + 1..].trim_start();
                let Some(quote) = after.chars().next().filter(|q| *q == '"' || *q == '\'') else {
                    break;
                };
                let value_end = after[1..].find(quote).map_or(after.len(), |e| e + 1);
                names.push((attr, Some(after[1..value_end].to_owned())));
                rest = after.get(value_end + 1..).unwrap_or("");
            }
        }
        names
    }

    /// XML: `name` is an element or attribute name (with or without its namespace prefix),
    /// `name=value` an attribute with that value, outside comments.
    pub(crate) fn xml_defines(src: &str, symbol: &str) -> bool {
        let (want, value) = match symbol.split_once('=') {
            Some((n, v)) => (n, Some(v.trim_matches(['"', '\'']))),
            None => (symbol, None),
        };
        xml_names(src).iter().any(|(n, v)| {
            let local = n.rsplit(':').next().unwrap_or(n);
            (n == want || local == want) && (value.is_none() || v.as_deref() == value)
        })
    }

    /// A line of TOML or shell without its `#` comment (a `#` outside quotes that starts a
    /// word).
    fn hash_comment_free(line: &str, lang: Lang) -> &str {
        let mut quote = None;
        let mut prev = ' ';
        for (at, c) in line.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if lang == Lang::Toml || prev.is_whitespace() => return &line[..at],
                _ => {}
            }
            prev = c;
        }
        line
    }

    /// TOML: `symbol` is a key (of a `key = …` line, an inline table or a table header) or a
    /// string value, outside comments.
    pub(crate) fn toml_defines(src: &str, symbol: &str) -> bool {
        let code = without_comments(Lang::Toml, src);
        let quoted = [format!("\"{symbol}\""), format!("'{symbol}'")];
        if quoted.iter().any(|q| code.contains(q.as_str())) {
            return true;
        }
        code.lines().any(|line| {
            let line = line.trim().trim_start_matches('[').trim_end_matches(']');
            line.split([',', '{'])
                .filter_map(|part| {
                    if part.contains('=') {
                        part.split_once('=').map(|(k, _)| k)
                    } else if !line.contains('=') {
                        Some(part) // a table header
                    } else {
                        None
                    }
                })
                .flat_map(|key| key.split('.'))
                .any(|k| k.trim().trim_matches(['"', '\'']) == symbol)
        })
    }
}

/// The checker itself, on small sources: what counts as a test or an item, and what does not.
mod checker {
    use super::scan::{self, Lang};

    fn rust_test(src: &str, name: &str) -> bool {
        scan::has_test(Lang::Rust, src, name)
    }

    fn java_test(src: &str, name: &str) -> bool {
        scan::has_test(Lang::Java, src, name)
    }

    #[test]
    fn a_real_rust_test_passes_with_attributes_and_docs_between() {
        assert!(rust_test("#[test]\nfn checks_it() {}\n", "checks_it"));
        let src = "/// Checks it.\n#[tokio::test(flavor = \"multi_thread\")]\n\
                   #[cfg_attr(miri, allow(dead_code))]\n// why\nasync fn checks_it() {}\n";
        assert!(rust_test(src, "checks_it"));
    }

    #[test]
    fn a_name_in_a_comment_a_use_line_a_call_or_a_string_is_not_a_test() {
        let cases = [
            "// fn checks_it() is tested elsewhere\n#[test]\nfn other() {}\n",
            "/* #[test]\nfn checks_it() {} /* nested */ */\n#[test]\nfn other() {}\n",
            "use super::checks_it;\n#[test]\nfn other() { checks_it(); }\n",
            "#[test]\nfn other() { let _ = \"#[test] fn checks_it() {}\"; }\n",
            "#[test]\nfn other() { let _ = r#\"#[test] fn checks_it() {}\"#; }\n",
        ];
        for src in cases {
            assert!(!rust_test(src, "checks_it"), "{src}");
            assert!(!scan::defines(Lang::Rust, src, "checks_it"), "{src}");
        }
    }

    #[test]
    fn an_ignored_fn_or_one_without_a_test_attribute_is_not_a_test() {
        let cases = [
            "fn checks_it() {}\n",
            "#[test]\n#[ignore = \"flaky\"]\nfn checks_it() {}\n",
            "#[ignore]\n#[test]\nfn checks_it() {}\n",
            "#[test]\n#[cfg_attr(not(feature = \"testbed\"), ignore)]\nfn checks_it() {}\n",
            "#[test]\nfn other() {}\nfn checks_it() {}\n",
        ];
        for src in cases {
            assert!(!rust_test(src, "checks_it"), "{src}");
        }
    }

    #[test]
    fn a_proptest_property_is_a_test_with_its_test_attribute() {
        let src = "proptest! {\n    #![proptest_config(ProptestConfig::with_cases(64))]\n\
                   \x20   /// Never panics.\n    #[test]\n\
                   \x20   fn never_panics(bytes in any::<Vec<u8>>(), n in 0usize..4) {\n\
                   \x20       prop_assert!(n < 4);\n    }\n\
                   \x20   fn plain(x in 0u8..1) {}\n}\n";
        assert!(rust_test(src, "never_panics"));
        assert!(!rust_test(src, "plain"));
    }

    #[test]
    fn a_java_test_is_annotated_and_not_ignored() {
        let src = "public class T {\n  @Test\n  public void checksIt() throws Exception {}\n\
                   \x20 @Test @Ignore(\"later\")\n  public void skipped() {}\n\
                   \x20 @Disabled @Test void disabled() {}\n  public void helper() {}\n\
                   \x20 // @Test public void commented() {}\n\
                   \x20 @Test public void other() { String s = \"@Test void quoted() {\"; }\n}\n";
        assert!(java_test(src, "checksIt"));
        for name in ["skipped", "disabled", "helper", "commented", "quoted"] {
            assert!(!java_test(src, name), "{name}");
        }
        let qualified = "class T { @org.junit.Test(timeout = 1000) public void checksIt() {} }";
        assert!(java_test(qualified, "checksIt"));
        let ignored_class = "@Ignore\npublic class T {\n  @Test public void checksIt() {}\n}\n";
        assert!(!java_test(ignored_class, "checksIt"));
    }

    #[test]
    fn rust_items_are_definitions_not_mentions() {
        let src = r##"
//! Calls `helper` and says "fn ghost".
use other::imported;
/// fn in_doc() {}
pub(crate) fn defined(x: &'static str) -> *const u8 {
    helper();
    let s = "fn in_string() {}";
    let r = r#"fn in_raw() {}"#;
    let q = '"';
    imported(s)
}
fn after_quote() {}
pub struct Limits {
    pub read_timeout: u64,
    max: HashMap<String, Vec<(u8, u16)>>,
}
enum Error {
    #[doc = "x"]
    BodyTooLarge { limit: u64 },
    Closed,
}
impl fmt::Debug for Secret {
    fn fmt(&self) {}
}
impl<T: Fn() -> u8> Wrapper<T> where T: Send {
    const MAX: usize = 3;
}
#[cfg(all(feature = "x", not(debug_assertions)))]
compile_error!("no");
tchap::install!();
macro_rules! key32 { () => {} }
fn body() {
    println!("statement, not an item");
}
"##;
        let present = [
            "defined",
            "after_quote",
            "Limits",
            "read_timeout",
            "Limits::max",
            "BodyTooLarge",
            "Error::BodyTooLarge",
            "BodyTooLarge::limit",
            "Closed",
            "Secret",
            "Secret::fmt",
            "Wrapper::MAX",
            "compile_error!",
            "install!",
            "key32",
        ];
        for symbol in present {
            assert!(scan::defines(Lang::Rust, src, symbol), "{symbol}");
        }
        let absent = [
            "helper",
            "ghost",
            "imported",
            "in_doc",
            "in_string",
            "in_raw",
            "str",
            "u8",
            "String",
            "Vec",
            "Limits::fmt",
            "Error::Limits",
            "fn defined",
            "install",
            "println!",
        ];
        for symbol in absent {
            assert!(!scan::defines(Lang::Rust, src, symbol), "{symbol}");
        }
    }

    #[test]
    fn java_xml_toml_and_script_items() {
        let java = "class K {\n  static final int MAX = 3;\n  enum Reason { UNWRAP_FAILED, HARDWARE }\n\
                    \x20 byte[] unwrap(byte[] id) throws E {\n\
                    \x20   throw new E(Reason.UNWRAP_FAILED, IllegalState.make());\n  }\n\
                    \x20 // void commented() {}\n}\n";
        for symbol in [
            "K",
            "MAX",
            "K.MAX",
            "Reason.UNWRAP_FAILED",
            "unwrap",
            "K.unwrap",
        ] {
            assert!(scan::defines(Lang::Java, java, symbol), "{symbol}");
        }
        for symbol in [
            "id",
            "E",
            "make",
            "IllegalState",
            "commented",
            "Reason.unwrap",
        ] {
            assert!(!scan::defines(Lang::Java, java, symbol), "{symbol}");
        }

        let xml = "<?xml version=\"1.0\"?>\n<!-- android:debuggable=\"true\" <comment/> -->\n\
                   <manifest xmlns:android=\"x\">\n  <application\n\
                   \x20   android:allowBackup=\"false\" android:label='a' />\n</manifest>\n";
        for symbol in [
            "manifest",
            "application",
            "allowBackup",
            "android:allowBackup",
        ] {
            assert!(scan::defines(Lang::Xml, xml, symbol), "{symbol}");
        }
        for symbol in [
            "allowBackup=false",
            "android:allowBackup=\"false\"",
            "label=a",
        ] {
            assert!(scan::defines(Lang::Xml, xml, symbol), "{symbol}");
        }
        for symbol in [
            "debuggable",
            "comment",
            "allowBackup=true",
            "fullBackupContent",
        ] {
            assert!(!scan::defines(Lang::Xml, xml, symbol), "{symbol}");
        }

        let toml = "# webpki-roots in a comment\n[bans]\nexclude-dev = true # not-a-key\n\
                    deny = [{ crate = \"openssl\" }]\n";
        for symbol in ["bans", "exclude-dev", "deny", "crate", "openssl"] {
            assert!(scan::defines(Lang::Toml, toml, symbol), "{symbol}");
        }
        for symbol in ["webpki-roots", "not-a-key", "true"] {
            assert!(!scan::defines(Lang::Toml, toml, symbol), "{symbol}");
        }

        let sh = "#!/bin/sh\n# cyclonedx in a comment\ncargo deny --locked check # done\n";
        assert!(scan::defines(Lang::Shell, sh, "cargo deny --locked check"));
        assert!(!scan::defines(Lang::Shell, sh, "cyclonedx"));
        assert!(!scan::defines(Lang::Shell, sh, "done"));
    }
}
