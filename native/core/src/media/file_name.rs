//! File names announced by peers (`body` / `filename` of an `m.file` event), made safe to show
//! and to save.
//!
//! A name comes from another user and is attacker-controlled: it must not choose a directory
//! (`../`, an absolute path, a Windows path), hide itself (leading dot), disguise its
//! extension (`invoice\u{202E}fdp.exe` displays as `invoiceexe.pdf`), carry control characters
//! into a terminal or a log, name a device on a FAT-formatted or Windows volume (`CON`,
//! `LPT1.txt`), or exceed what file systems accept.

/// Longest name [`sanitize_file_name`] returns, in bytes (ext4, F2FS and FAT long names).
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Longest extension (dot included, in bytes) kept when a long name is shortened.
const MAX_EXTENSION_LEN: usize = 16;

/// What an empty or fully stripped name becomes.
const FALLBACK_NAME: &str = "attachment";

/// Characters that FAT/exFAT (Android shared storage) and Windows refuse in a name.
const FORBIDDEN: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// Windows and FAT device names, reserved whatever the extension.
const RESERVED: [&str; 24] = [
    "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Turns a file name received from a peer into one safe to display and to save in a directory
/// of our choosing.
///
/// In order: removes control characters, bidirectional controls (U+061C, U+200E, U+200F,
/// U+202A–U+202E, U+2066–U+2069) and other invisible format characters (zero-width ones,
/// U+2028/U+2029, U+FEFF, soft hyphen); keeps only the last path component (after any `/` or
/// `\`); replaces `< > : " | ? *` with `_`; strips leading dots and whitespace and trailing
/// dots and whitespace; prefixes a reserved device name (`CON`, `nul.txt`, `LPT1.tar.gz`, …)
/// with `_`; shortens the result to at most [`MAX_FILE_NAME_LEN`] bytes on a character
/// boundary, keeping an extension of up to 16 bytes; and returns `"attachment"` if nothing is
/// left. The result is never empty, never `.` or `..`, and contains no separator.
pub fn sanitize_file_name(name: &str) -> String {
    let visible: String = name.chars().filter(|&c| !is_invisible(c)).collect();
    let last_component = visible.rsplit(['/', '\\']).next().unwrap_or_default();
    let replaced: String = last_component
        .chars()
        .map(|c| if FORBIDDEN.contains(&c) { '_' } else { c })
        .collect();
    let trimmed = replaced
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        return FALLBACK_NAME.to_owned();
    }
    let unreserved = if is_reserved(trimmed) {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    truncate_keeping_extension(&unreserved)
}

/// Control characters (C0, DEL, C1) and invisible format characters, bidi controls included.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A device name, compared without case on the part before the first dot.
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem))
}

fn truncate_keeping_extension(name: &str) -> String {
    if name.len() <= MAX_FILE_NAME_LEN {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_LEN => {
            name.get(dot..).unwrap_or_default()
        }
        _ => "",
    };
    let stem = name.get(..name.len() - extension.len()).unwrap_or_default();
    let budget = MAX_FILE_NAME_LEN - extension.len();
    let cut = (0..=budget.min(stem.len()))
        .rev()
        .find(|&i| stem.is_char_boundary(i))
        .unwrap_or(0);
    let stem = stem
        .get(..cut)
        .unwrap_or_default()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if stem.is_empty() {
        return FALLBACK_NAME.to_owned();
    }
    format!("{stem}{extension}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sanitize_file_name_cases() {
        let long_a = "a".repeat(300);
        let long_e = "é".repeat(300);
        let long_emoji = "😀".repeat(100);
        let cases: &[(&str, &str)] = &[
            ("report.pdf", "report.pdf"),
            ("Note de synthèse – v2.docx", "Note de synthèse – v2.docx"),
            ("../../etc/passwd", "passwd"),
            ("/etc/shadow", "shadow"),
            ("..\\..\\Windows\\system32\\cmd.exe", "cmd.exe"),
            ("C:\\Users\\x\\doc.txt", "doc.txt"),
            ("a/b\\c/d.txt", "d.txt"),
            ("dir/", FALLBACK_NAME),
            ("", FALLBACK_NAME),
            (".", FALLBACK_NAME),
            ("..", FALLBACK_NAME),
            ("...", FALLBACK_NAME),
            ("   ", FALLBACK_NAME),
            (".bashrc", "bashrc"),
            ("  .hidden.txt  ", "hidden.txt"),
            (". .x", "x"),
            ("name. . .", "name"),
            ("a\u{0}b\nc\u{7f}d\u{9b}.txt", "abcd.txt"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("x\u{2066}y\u{2069}\u{200F}.txt", "xy.txt"),
            ("\u{202E}", FALLBACK_NAME),
            ("zero\u{200B}width\u{FEFF}.txt", "zerowidth.txt"),
            (".\u{202E}/..", FALLBACK_NAME),
            ("evil/\u{200B}", FALLBACK_NAME),
            ("a<b>c:d\"e|f?g*h.txt", "a_b_c_d_e_f_g_h.txt"),
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("Lpt9.tar.gz", "_Lpt9.tar.gz"),
            ("nul .txt", "_nul .txt"),
            ("console.txt", "console.txt"),
            ("COM10", "COM10"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize_file_name(input), *expected, "input {input:?}");
        }

        let name = sanitize_file_name(&format!("{long_a}.pdf"));
        assert_eq!(name.len(), MAX_FILE_NAME_LEN);
        assert!(name.ends_with(".pdf") && name.starts_with("aaa"));

        let name = sanitize_file_name(&format!("{long_e}.pdf"));
        assert!(name.len() <= MAX_FILE_NAME_LEN && name.ends_with(".pdf"));
        assert!(name.trim_end_matches(".pdf").chars().all(|c| c == 'é'));

        let name = sanitize_file_name(&format!("{long_emoji}.txt"));
        assert!(name.len() <= MAX_FILE_NAME_LEN && name.ends_with(".txt"));

        assert_eq!(sanitize_file_name(&long_a), "a".repeat(MAX_FILE_NAME_LEN));

        // An "extension" longer than 16 bytes is not kept: plain truncation.
        let name = sanitize_file_name(&format!("a.{long_a}"));
        assert_eq!(name.len(), MAX_FILE_NAME_LEN);
        assert!(name.starts_with("a.aaa"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn sanitize_file_name_invariants(
            name in prop_oneof![
                "\\PC{0,300}",
                ".{0,300}",
                "[./\\\\ a\u{202E}\u{2066}\u{0}é😀:*CONnul]{0,400}",
            ]
        ) {
            let out = sanitize_file_name(&name);
            prop_assert!(!out.is_empty());
            prop_assert!(out.len() <= MAX_FILE_NAME_LEN);
            prop_assert!(!out.starts_with('.'));
            prop_assert!(out != "." && out != "..");
            prop_assert!(!out.contains(['/', '\\']));
            prop_assert!(!out.chars().any(is_invisible));
            prop_assert!(!out.contains(FORBIDDEN));
            prop_assert!(!is_reserved(&out));
            prop_assert_eq!(sanitize_file_name(&out), out);
        }
    }
}
