//! The traceability table must stay true: every threat has a mitigation, every code path it
//! names exists and contains the named symbol, every test it names exists.

use std::path::Path;

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

fn split(entry: &str) -> (&str, &str) {
    entry
        .split_once("::")
        .unwrap_or_else(|| panic!("entry {entry:?} is not `path::symbol`"))
}

#[test]
fn every_threat_has_a_mitigation_existing_code_and_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("threat-model/traceability.toml")).unwrap();
    let table: Table = toml::from_str(&text).unwrap();
    assert!(table.threat.len() >= 20, "the table lost threats");
    let mut ids = std::collections::HashSet::new();
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
                // Rust `fn name()` or a JUnit `public void name()`.
                Ok(src)
                    if src.contains(&format!("fn {name}()"))
                        || src.contains(&format!("void {name}()")) => {}
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("threat-model/traceability.toml")).unwrap();
    let table: Table = toml::from_str(&text).unwrap();
    let model = std::fs::read_to_string(root.join("threat-model/THREAT-MODEL.md")).unwrap();
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
