//! Tchap display names: "Prénom Nom [Organisation]" parsed and neutralised (issue 19 item 3).
//!
//! Every Tchap display name reads `Prénom Nom [Organisation]`, and the client shows the person
//! and the organisation apart, as an identity the user trusts. The display name is written by
//! its owner (and a homeserver can rewrite it), so [`parse`] reads it as hostile:
//!
//! 1. **Neutralise.** Bidi controls are removed (a U+202E turns `[seémrA] naeJ` into
//!    `Jean [Armées]` on screen), and so are invisible chars (general category Cf, variation
//!    selectors, Hangul fillers, the braille blank: two names differing by one look alike);
//!    control chars (C0, C1, line and paragraph separators: newlines, tabs) become a space.
//!    Then NFC, runs of whitespace collapsed to one space, trim.
//! 2. **Split.** The organisation is the text inside one bracket group that ends the string;
//!    bracket lookalikes (`［ ］`, `【 】`, `⟦ ⟧`, `〔 〕`, `﹇ ﹈`…) count as brackets. Any other
//!    shape (two groups, a group in a group, a group before the end, a lone bracket) is
//!    ambiguous: no organisation, and every bracket is taken out of the name, so that no
//!    reading shows a forged organisation inside a name.
//! 3. **Bound.** Name and organisation are cut to [`MAX_NAME_CHARS`] and
//!    [`MAX_ORGANISATION_CHARS`] chars (ending with `…`); a name left empty is the user id's
//!    localpart, neutralised the same way.
//! 4. **Flag lookalikes.** [`NameIssue::MixedScripts`] for Latin letters mixed with Cyrillic or
//!    Greek ones in one string; [`NameIssue::LookalikeOrganisation`] for an organisation that is
//!    not a known one but has the [`skeleton`] of one.
//!
//! The UI shows [`ParsedName::shown`] and warns when [`ParsedName::is_suspicious`].
//!
//! ## Deliberate choices
//!
//! - Ambiguous brackets give no organisation at all, never the likeliest reading: showing
//!   `Jean Armées Martin Autre` with no organisation is harmless, showing a wrong one is not.
//! - A display name `""` is no display name; one that neutralises to nothing (`"\u{200B}"`,
//!   `"[Armées]"`) is [`NameIssue::EmptyName`].
//! - The skeleton folds case (lower, upper, lower: `ß` is `ss`, `ς` is `σ`, `ı` is `i`) before
//!   mapping confusables, so a letter and its capital always share a skeleton. Hence the Greek
//!   `ν` and `υ` read `v` and `u` even as the capitals `Ν` and `Υ`, which look like `N` and
//!   `Y`: a Greek capital among Latin letters is [`NameIssue::MixedScripts`] anyway.
//! - Known organisations go through the same neutralisation before the exact comparison (a
//!   list stored in NFD still matches), and one whose skeleton is empty imitates nothing.
//!
//! ## Left out
//!
//! Lookalikes from other scripts (Armenian `օ`, Cherokee `Ꭺ`), Latin-only homoglyphs (`rn` for
//! `m`, `I` for `l`) and stacks of combining marks are not flagged: the full confusables table
//! of UTS #39 would be the next step.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest person name shown, in chars; a longer one is cut and ends with `…`.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest organisation shown, in chars; a longer one is cut and ends with `…`.
pub const MAX_ORGANISATION_CHARS: usize = 128;

/// The name shown when neither the display name nor the user id leaves anything.
const UNKNOWN_NAME: &str = "?";

/// A display name as shown: the person's name and their organisation, neutralised.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParsedName {
    /// The person's name, neutralised; never empty (the user id's localpart when nothing is
    /// left of the display name), without any bracket.
    pub name: String,
    /// The organisation, neutralised: the text inside the one bracket group that ends the
    /// display name; `None` when there is none or the brackets are ambiguous.
    pub organisation: Option<String>,
    /// What was found and neutralised or flagged, each once, in the order of the variants.
    pub issues: Vec<NameIssue>,
}

/// Something found in a display name, neutralised or flagged.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NameIssue {
    /// Bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) were removed.
    BidiControl,
    /// Invisible chars (general category Cf other than bidi, variation selectors, tag chars,
    /// Hangul fillers, the braille blank…) were removed.
    Invisible,
    /// Control chars (C0, C1, newlines, tabs, line and paragraph separators) became spaces.
    Control,
    /// There is no organisation (none given, or refused).
    NoOrganisation,
    /// Brackets in a bracket group, several groups, or a group inside the name: the
    /// organisation is refused and the brackets are taken out of the name.
    NestedBrackets,
    /// A lone opening or closing bracket: the organisation is refused.
    UnbalancedBrackets,
    /// Nothing was left of the person's name: the user id's localpart is shown instead.
    EmptyName,
    /// The name or the organisation was over its limit and was cut, ending with `…`.
    TooLong,
    /// The name or the organisation mixes Latin letters with Cyrillic or Greek ones.
    MixedScripts,
    /// The organisation is not a known one but has the skeleton of the known one `of`.
    LookalikeOrganisation {
        /// The known organisation imitated.
        of: String,
    },
}

impl ParsedName {
    /// The shown form: `name [organisation]`, or `name`.
    pub fn shown(&self) -> String {
        match &self.organisation {
            Some(organisation) => format!("{} [{organisation}]", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether anything other than a missing organisation was found.
    pub fn is_suspicious(&self) -> bool {
        self.issues
            .iter()
            .any(|issue| *issue != NameIssue::NoOrganisation)
    }
}

/// Parses and neutralises `display_name` (`None`: the member has none) of the user
/// `user_id`, flagging an organisation that imitates one of `known_organisations`. Never panics.
pub fn parse(
    display_name: Option<&str>,
    user_id: &str,
    known_organisations: &[String],
) -> ParsedName {
    let mut issues = Vec::new();
    let (name, organisation) = match display_name.filter(|raw| !raw.is_empty()) {
        Some(raw) => {
            let text = neutralise(raw, &mut issues);
            let (name, organisation) = split(&text, &mut issues);
            if name.is_empty() {
                issues.push(NameIssue::EmptyName);
            }
            (name, organisation)
        }
        None => (String::new(), None),
    };
    let name = if name.is_empty() {
        fallback_name(user_id, &mut issues)
    } else {
        name
    };
    let name = bound(name, MAX_NAME_CHARS, &mut issues);
    let organisation = organisation.map(|org| bound(org, MAX_ORGANISATION_CHARS, &mut issues));
    if mixes_scripts(&name) || organisation.as_deref().is_some_and(mixes_scripts) {
        issues.push(NameIssue::MixedScripts);
    }
    match &organisation {
        None => issues.push(NameIssue::NoOrganisation),
        Some(organisation) => {
            if let Some(of) = imitated(organisation, known_organisations) {
                issues.push(NameIssue::LookalikeOrganisation { of: of.clone() });
            }
        }
    }
    issues.sort();
    issues.dedup();
    ParsedName {
        name,
        organisation,
        issues,
    }
}

/// The skeleton of `s` for lookalike comparison: NFKD, case folded, combining marks and
/// invisible chars dropped, Cyrillic and Greek lookalikes of Latin letters (and `0`, `1`)
/// mapped to them, and every char that is not alphanumeric dropped, so `Ministère des Armées`,
/// `ministere-des-armees` and `Ministère des Аrmées` (Cyrillic `А`) all give
/// `ministeredesarmees`.
pub fn skeleton(s: &str) -> String {
    let folded: String = s
        .nfkd()
        .flat_map(char::to_lowercase)
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .nfkd()
        .filter(|&c| !is_combining_mark(c) && !is_invisible(c))
        .map(latin_lookalike)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// The Latin letter a (case-folded) Cyrillic or Greek letter or a digit imitates, or `c`.
fn latin_lookalike(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' => 'e',
        'н' => 'h',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        '1' => 'l',
        'м' => 'm',
        'о' | 'ο' | '0' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' => 'y',
        other => other,
    }
}

/// Removes bidi controls and invisible chars, turns controls into spaces, then NFC, collapses
/// whitespace and trims, recording what it found in `issues`.
fn neutralise(raw: &str, issues: &mut Vec<NameIssue>) -> String {
    let (mut bidi, mut invisible, mut control) = (false, false, false);
    let kept: String = raw
        .chars()
        .filter_map(|c| {
            if is_bidi_control(c) {
                bidi = true;
                None
            } else if is_invisible(c) {
                invisible = true;
                None
            } else if is_control(c) {
                control = true;
                Some(' ')
            } else {
                Some(c)
            }
        })
        .collect();
    let found = [
        (bidi, NameIssue::BidiControl),
        (invisible, NameIssue::Invisible),
        (control, NameIssue::Control),
    ];
    issues.extend(
        found
            .into_iter()
            .filter(|(found, _)| *found)
            .map(|(_, issue)| issue),
    );
    collapse_whitespace(&kept.nfc().collect::<String>())
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits neutralised `text` into the name and the organisation (see the module docs).
fn split(text: &str, issues: &mut Vec<NameIssue>) -> (String, Option<String>) {
    // Top-level groups as (start of the opening bracket, end of it, start of the closing
    // bracket, end of it), in bytes.
    let mut groups = Vec::new();
    let (mut depth, mut opened, mut nested, mut unbalanced) = (0_usize, (0, 0), false, false);
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        match bracket(c) {
            Some(Bracket::Open) if depth == 0 => (depth, opened) = (1, (at, end)),
            Some(Bracket::Open) => (depth, nested) = (depth + 1, true),
            Some(Bracket::Close) if depth == 0 => unbalanced = true,
            Some(Bracket::Close) if depth == 1 => {
                depth = 0;
                groups.push((opened, (at, end)));
            }
            Some(Bracket::Close) => depth -= 1,
            None => {}
        }
    }
    unbalanced |= depth > 0;
    if let [((open, content), (close, end))] = groups[..]
        && !nested
        && !unbalanced
        && end == text.len()
    {
        let name = text.get(..open).unwrap_or_default().trim_end();
        let organisation = text.get(content..close).unwrap_or_default().trim();
        let organisation = (!organisation.is_empty()).then(|| organisation.to_owned());
        return (name.to_owned(), organisation);
    }
    let trailing = groups
        .last()
        .is_some_and(|&(_, (_, end))| end == text.len());
    if nested || groups.len() > 1 || (groups.len() == 1 && !trailing) {
        issues.push(NameIssue::NestedBrackets);
    }
    if unbalanced {
        issues.push(NameIssue::UnbalancedBrackets);
    }
    (strip_brackets(text), None)
}

/// `text` with every bracket-like char turned into a space, whitespace collapsed again.
fn strip_brackets(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if bracket(c).is_some() { ' ' } else { c })
        .collect();
    collapse_whitespace(&spaced)
}

/// The name shown when the display name leaves none: the neutralised localpart of `user_id`,
/// else the whole neutralised user id, else [`UNKNOWN_NAME`].
fn fallback_name(user_id: &str, issues: &mut Vec<NameIssue>) -> String {
    let unsigiled = user_id.strip_prefix('@').unwrap_or(user_id);
    let localpart = unsigiled
        .split_once(':')
        .map_or(unsigiled, |(localpart, _)| localpart);
    for candidate in [localpart, user_id] {
        let neutral = neutralise(candidate, issues);
        let name = strip_brackets(&neutral);
        if name != neutral {
            issues.push(NameIssue::NestedBrackets);
        }
        if !name.is_empty() {
            return name;
        }
    }
    UNKNOWN_NAME.to_owned()
}

/// `text` cut to `max` chars, the last one `…`, when it is longer.
fn bound(text: String, max: usize, issues: &mut Vec<NameIssue>) -> String {
    if text.chars().count() <= max {
        return text;
    }
    issues.push(NameIssue::TooLong);
    let kept: String = text.chars().take(max - 1).collect();
    format!("{}…", kept.trim_end())
}

/// The known organisation `organisation` imitates: not one of them, but one's skeleton.
fn imitated<'k>(organisation: &str, known: &'k [String]) -> Option<&'k String> {
    if known
        .iter()
        .any(|k| neutralise(k, &mut Vec::new()) == organisation)
    {
        return None;
    }
    let target = skeleton(organisation);
    if target.is_empty() {
        return None;
    }
    known.iter().find(|k| skeleton(k) == target)
}

/// Whether `text` has both Latin letters and Cyrillic or Greek ones.
fn mixes_scripts(text: &str) -> bool {
    let letters = || text.chars().filter(|c| c.is_alphabetic());
    letters().any(is_latin) && letters().any(is_cyrillic_or_greek)
}

fn is_latin(c: char) -> bool {
    matches!(c,
        'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{0250}'..='\u{02AF}'
        | '\u{1D00}'..='\u{1D7F}' | '\u{1E00}'..='\u{1EFF}' | '\u{2C60}'..='\u{2C7F}'
        | '\u{A720}'..='\u{A7FF}' | '\u{AB30}'..='\u{AB6F}' | '\u{FF21}'..='\u{FF3A}'
        | '\u{FF41}'..='\u{FF5A}')
}

fn is_cyrillic_or_greek(c: char) -> bool {
    matches!(c,
        '\u{0370}'..='\u{03FF}' | '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}'
        | '\u{1F00}'..='\u{1FFF}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}'
        | '\u{1E030}'..='\u{1E08F}')
}

fn is_bidi_control(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        // General category Cf (Unicode 16), the bidi controls apart.
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}'
        | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}'
        // Invisible or blank letters and marks: combining grapheme joiner, Hangul fillers,
        // Khmer inherent vowels, Mongolian and standard variation selectors, braille blank.
        | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180D}'
        | '\u{180F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FFA0}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// C0 and C1 controls (newlines, tabs, DEL), and the line and paragraph separators.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

enum Bracket {
    Open,
    Close,
}

/// Square brackets and their lookalikes (fullwidth, CJK, mathematical, half brackets).
fn bracket(c: char) -> Option<Bracket> {
    match c {
        '[' | '［' | '⟦' | '【' | '〔' | '〖' | '〘' | '〚' | '﹇' | '﹝' | '⁅' | '❲' | '⟬'
        | '⦋' | '⦍' | '⦏' | '⸢' | '⸤' | '⌈' | '⌊' | '⎡' | '⎣' | '\u{2E55}' | '\u{2E57}' => {
            Some(Bracket::Open)
        }
        ']' | '］' | '⟧' | '】' | '〕' | '〗' | '〙' | '〛' | '﹈' | '﹞' | '⁆' | '❳' | '⟭'
        | '⦌' | '⦎' | '⦐' | '⸣' | '⸥' | '⌉' | '⌋' | '⎤' | '⎦' | '\u{2E56}' | '\u{2E58}' => {
            Some(Bracket::Close)
        }
        _ => None,
    }
}
#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::{Index, select};
    use proptest::test_runner::Config as ProptestConfig;
    use serde_json::json;

    use super::*;
    use NameIssue::{
        BidiControl, Control, EmptyName, Invisible, MixedScripts, NestedBrackets, NoOrganisation,
        TooLong, UnbalancedBrackets,
    };

    const USER: &str = "@jean.martin-armees.gouv.fr:agent.dinum.tchap.gouv.fr";
    const LOCAL: &str = "jean.martin-armees.gouv.fr";
    const ARMEES: &str = "Ministère des Armées";
    const NO: &[NameIssue] = &[NoOrganisation];
    const NESTED: &[NameIssue] = &[NoOrganisation, NestedBrackets];
    const LONE: &[NameIssue] = &[NoOrganisation, UnbalancedBrackets];
    const EMPTY: &[NameIssue] = &[NoOrganisation, EmptyName];
    /// Every bidi control; invisible chars from each range of [`is_invisible`] (both ends).
    const BIDI: &str = "\u{061C}\u{200E}\u{200F}\u{202A}\u{202C}\u{202E}\u{2066}\u{2069}";
    const INVISIBLE: &str = "\u{AD}\u{34F}\u{600}\u{605}\u{6DD}\u{70F}\u{890}\u{891}\u{8E2}\
        \u{115F}\u{1160}\u{17B4}\u{17B5}\u{180B}\u{180D}\u{180E}\u{180F}\u{200B}\u{200C}\u{200D}\
        \u{2060}\u{2064}\u{206A}\u{206F}\u{2800}\u{3164}\u{FE00}\u{FE0F}\u{FEFF}\u{FFA0}\u{FFF9}\
        \u{FFFB}\u{110BD}\u{110CD}\u{13430}\u{1343F}\u{1BCA0}\u{1BCA3}\u{1D173}\u{1D17A}\u{E0000}\
        \u{E0041}\u{E007F}\u{E0100}\u{E01EF}";
    const CONTROLS: &str = "\0\t\n\r\u{1B}\u{7F}\u{80}\u{85}\u{9F}\u{2028}\u{2029}";
    const OPEN: &str = "[［⟦【〔〖〘〚﹇﹝⁅❲⟬⦋⦍⦏⸢⸤⌈⌊⎡⎣\u{2E55}\u{2E57}";
    const CLOSE: &str = "]］⟧】〕〗〙〛﹈﹞⁆❳⟭⦌⦎⦐⸣⸥⌉⌋⎤⎦\u{2E56}\u{2E58}";

    /// A display name, and the name, organisation and issues expected of it.
    type Case = (Str, Str, Option<Str>, &'static [NameIssue]);
    type Str = &'static str;

    fn known() -> Vec<String> {
        [ARMEES, "Intérieur", "DINUM"].map(str::to_owned).to_vec()
    }

    fn p(display_name: &str) -> ParsedName {
        parse(Some(display_name), USER, &known())
    }

    fn parsed(name: &str, organisation: Option<&str>, issues: &[NameIssue]) -> ParsedName {
        let (name, issues) = (name.to_owned(), issues.to_vec());
        ParsedName {
            name,
            organisation: organisation.map(str::to_owned),
            issues,
        }
    }

    fn check(cases: &[Case]) {
        for &(display_name, name, organisation, issues) in cases {
            let expected = parsed(name, organisation, issues);
            assert_eq!(p(display_name), expected, "{display_name:?}");
        }
    }

    /// Checks `Jean{c}Martin [Min{c}{c}Armées{c}]`-like names for each char `c` of `chars`.
    fn check_each(chars: &str, template: &str, name: &str, org: &str, issue: NameIssue) {
        for c in chars.chars() {
            let display_name = template.replace('_', &c.to_string());
            let expected = parsed(name, Some(org), std::slice::from_ref(&issue));
            assert_eq!(p(&display_name), expected, "{c:?}");
        }
    }

    fn lookalike(of: &str) -> NameIssue {
        NameIssue::LookalikeOrganisation { of: of.to_owned() }
    }

    #[test]
    fn plain_name_and_organisation_are_split() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("Jean Martin [Ministère des Armées]", "Jean Martin", Some(ARMEES), &[]),
            ("Élise Durand[Intérieur]", "Élise Durand", Some("Intérieur"), &[]),
            ("Jean Martin", "Jean Martin", None, NO),
            ("Jean Martin (Armées)", "Jean Martin (Armées)", None, NO),
        ];
        check(cases);
        let name = p("Élise Durand[Intérieur]");
        assert_eq!(name.shown(), "Élise Durand [Intérieur]");
        assert!(!name.is_suspicious() && !p("Jean Martin").is_suspicious());
        assert_eq!(p("Jean Martin").shown(), "Jean Martin");
    }

    #[test]
    fn missing_or_empty_name_falls_back_to_the_localpart() {
        assert_eq!(parse(None, USER, &known()), parsed(LOCAL, None, NO));
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("", LOCAL, None, NO),
            ("\u{200B}\u{202E}", LOCAL, None, &[BidiControl, Invisible, NoOrganisation, EmptyName]),
            (" \n ", LOCAL, None, &[Control, NoOrganisation, EmptyName]),
            ("   ", LOCAL, None, EMPTY),
            ("[Armées]", LOCAL, Some("Armées"), &[EmptyName]),
            ("[]", LOCAL, None, EMPTY),
        ];
        check(cases);
        assert!(p(" ").is_suspicious());
    }

    #[test]
    fn hostile_user_id_is_neutralised_in_the_fallback() {
        let fallback = |user_id: &str| parse(None, user_id, &[]);
        let issues = [BidiControl, NoOrganisation, NestedBrackets];
        let bidi = fallback("@je\u{202E}an[x]:s");
        assert_eq!(bidi, parsed("jean x", None, &issues));
        let issues = [Invisible, NoOrganisation];
        assert_eq!(fallback("@\u{200B}:s"), parsed("@:s", None, &issues));
        for (user_id, name) in [("@:s", "@:s"), ("bob:s", "bob"), ("", "?"), ("[]", "?")] {
            assert_eq!(fallback(user_id).name, name, "{user_id:?}");
        }
        let long = fallback(&format!("@{}:s", "x".repeat(300)));
        assert_eq!(long.issues, [NoOrganisation, TooLong]);
    }

    #[test]
    fn bidi_controls_are_removed() {
        let template = "_Je_an Martin_ [Arm_ées]_";
        check_each(BIDI, template, "Jean Martin", "Armées", BidiControl);
        // "\u{202E}[seémrA] naeJ" shows as "Jean [Armées]"; in memory, the group comes first.
        let issues = &[BidiControl, NoOrganisation, NestedBrackets];
        check(&[("\u{202E}[seémrA] naeJ", "seémrA naeJ", None, issues)]);
    }

    #[test]
    fn invisible_chars_are_removed() {
        let template = "_Je_an _Martin [Arm_ées]_";
        check_each(INVISIBLE, template, "Jean Martin", "Armées", Invisible);
        let kept = "Ján \u{2764}\u{2801}";
        check(&[("Ja\u{301}n \u{2764}\u{2801}", kept, None, NO)]);
    }

    #[test]
    fn controls_and_newlines_become_spaces() {
        let template = "Jean_Martin [Min__Armées_]";
        check_each(CONTROLS, template, "Jean Martin", "Min Armées", Control);
    }

    #[test]
    fn whitespace_is_collapsed_and_nfc_applied() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("\u{A0}Jean \u{3000} Le\u{301}a [ Arme\u{301}es]", "Jean Léa", Some("Armées"), &[]),
            ("Jean [Ministe\u{300}re des Arme\u{301}es]", "Jean", Some(ARMEES), &[]),
        ];
        check(cases);
    }

    #[test]
    fn fullwidth_and_other_bracket_lookalikes_are_brackets() {
        check(&[("Jean Martin ［Armées］", "Jean Martin", Some("Armées"), &[])]);
        assert_eq!(p("Jean Martin ［Armées］").shown(), "Jean Martin [Armées]");
        for (open, close) in OPEN.chars().zip(CLOSE.chars()) {
            #[rustfmt::skip]
            let shapes = [
                (format!("Jean{open}A{close}"), parsed("Jean", Some("A"), &[])),
                (format!("Jean {open}A{close} B"), parsed("Jean A B", None, NESTED)),
                (format!("Jean {open}A"), parsed("Jean A", None, LONE)),
                (format!("Jean{close}A"), parsed("Jean A", None, LONE)),
            ];
            for (display_name, expected) in shapes {
                assert_eq!(p(&display_name), expected, "{display_name}");
            }
        }
    }

    #[test]
    fn two_bracket_groups_are_refused() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("Jean [Armées] Martin [Autre]", "Jean Armées Martin Autre", None, NESTED),
            ("Jean [Armées][Autre]", "Jean Armées Autre", None, NESTED),
            ("Jean [Armées] Martin", "Jean Armées Martin", None, NESTED),
        ];
        check(cases);
        assert!(p("Jean [Armées] Martin [Autre]").is_suspicious());
    }

    #[test]
    fn nested_brackets_are_refused() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("Jean Martin [Min [Armées]]", "Jean Martin Min Armées", None, NESTED),
            ("Jean [[Armées]]", "Jean Armées", None, NESTED),
            ("Jean [a [b] c [d]]", "Jean a b c d", None, NESTED),
        ];
        check(cases);
    }

    #[test]
    fn unbalanced_brackets_are_refused() {
        let both = &[NoOrganisation, NestedBrackets, UnbalancedBrackets];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("Jean ] Martin [Armées]", "Jean Martin Armées", None, LONE),
            ("Jean [Min [Armées]", "Jean Min Armées", None, both),
            ("Jean [Armées]]", "Jean Armées", None, both),
        ];
        check(cases);
    }

    #[test]
    fn empty_brackets_give_no_organisation() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("Jean Martin []", "Jean Martin", None, NO),
            ("Jean Martin [ \u{200B} ]", "Jean Martin", None, &[Invisible, NoOrganisation]),
        ];
        check(cases);
    }

    #[test]
    fn very_long_name_and_organisation_are_cut() {
        let a = "a".repeat(MAX_NAME_CHARS);
        let o = "o".repeat(MAX_ORGANISATION_CHARS);
        assert_eq!(p(&a), parsed(&a, None, NO));
        assert_eq!(p(&format!("Jean [{o}]")), parsed("Jean", Some(&o), &[]));
        let (cut_a, cut_o) = (format!("{}…", &a[1..]), format!("{}…", &o[1..]));
        let long = p(&format!("{a}a [{o}o]"));
        assert_eq!(long, parsed(&cut_a, Some(&cut_o), &[TooLong]));
        // Cut after a space: the space goes. Cut in multibyte chars: no panic.
        assert_eq!(p(&format!("{} bcd", &a[2..])).name, format!("{}…", &a[2..]));
        let wide = p(&"é\u{301}".repeat(500)).name;
        assert!(wide.chars().count() == MAX_NAME_CHARS && wide.ends_with('…'));
    }

    #[test]
    fn latin_mixed_with_cyrillic_or_greek_is_flagged() {
        let mixed = &[NoOrganisation, MixedScripts];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("J\u{435}an Martin", "J\u{435}an Martin", None, mixed),
            ("Jean \u{39C}artin", "Jean \u{39C}artin", None, mixed),
            ("Ｊｅａｎ Иван", "Ｊｅａｎ Иван", None, mixed),
            ("Иван Петров [Армия]", "Иван Петров", Some("Армия"), &[]),
            ("Γιώργος Παπαδόπουλος", "Γιώργος Παπαδόπουλος", None, NO),
            ("Иван Петров [Ministère des Armées]", "Иван Петров", Some(ARMEES), &[]),
        ];
        check(cases);
        let org = parse(Some("Jean [Ministère des \u{410}rmées]"), USER, &[]);
        assert_eq!(org.issues, [MixedScripts]);
    }

    #[test]
    fn exact_known_organisation_is_not_flagged() {
        assert_eq!(p("Jean [Ministère des Armées]").issues, []);
        let nfd = ["Ministe\u{300}re des Arme\u{301}es".to_owned()];
        let exact = parse(Some("Jean [Ministère des Armées]"), USER, &nfd);
        assert_eq!(exact.issues, []);
    }

    #[test]
    fn accent_or_case_insensitive_lookalike_is_flagged() {
        let orgs = [
            "Ministere des Armees",
            "ministère des armées",
            "Ministere-des-Armees",
        ];
        for org in orgs {
            let name = p(&format!("Jean [{org}]"));
            assert_eq!(name.issues, [lookalike(ARMEES)], "{org}");
            assert!(name.is_suspicious());
        }
        assert_eq!(p("Jean [Interieur]").issues, [lookalike("Intérieur")]);
    }

    #[test]
    fn cyrillic_or_greek_lookalike_is_flagged() {
        let cyrillic = p("Jean [Ministère des \u{410}rmées]").issues;
        assert_eq!(cyrillic, [MixedScripts, lookalike(ARMEES)]);
        let greek = p("Jean [\u{399}ntérieur]").issues;
        assert_eq!(greek, [MixedScripts, lookalike("Intérieur")]);
        assert_eq!(p("Jean ［ＤＩＮＵＭ］").issues, [lookalike("DINUM")]);
    }

    #[test]
    fn other_organisations_are_not_flagged() {
        assert_eq!(p("Jean [Finances]").issues, []);
        assert_eq!(p("Jean [D1NUM]").issues, []);
        let no_known = parse(Some("Jean [Ministere des Armees]"), USER, &[]);
        assert_eq!(no_known.issues, []);
        assert_eq!(parse(Some("Jean [-]"), USER, &["—".to_owned()]).issues, []);
    }

    #[test]
    fn skeleton_maps_lookalikes_to_latin() {
        for s in [
            "ministere des armees",
            "Ministère des \u{410}rmées",
            "Ministere-des-Armees",
        ] {
            assert_eq!(skeleton(s), skeleton(ARMEES), "{s}");
        }
        #[rustfmt::skip]
        let cases = [
            ("аАα", "aaa"), ("вВβ", "bbb"), ("сС", "cc"), ("ԁԀ", "dd"), ("еЕε", "eee"),
            ("нН", "hh"), ("іІιΙ", "iiii"), ("јЈ", "jj"), ("кКκΚ", "kkkk"), ("1", "l"),
            ("мМ", "mm"), ("оОοΟ0", "ooooo"), ("рРρΡ", "pppp"), ("ԛԚ", "qq"), ("ѕЅ", "ss"),
            ("тТτΤ", "tttt"), ("υΥ", "uu"), ("νΝ", "vv"), ("ԝԜ", "ww"), ("хХχΧ", "xxxx"),
            ("уУ", "yy"), ("ı", "i"), ("ẞß", "ssss"), ("ςΣ", "σσ"), ("ﬁ²", "fi2"),
            (ARMEES, "ministeredesarmees"), ("l'É-tat. \u{200B}\u{3164}", "letat"), ("कि", "क"),
        ];
        for (s, expected) in cases {
            assert_eq!(skeleton(s), expected, "{s}");
        }
    }

    #[test]
    fn skeleton_of_every_cased_char_is_stable_and_case_blind() {
        let cased = [0..=0x2FFF, 0xA640..=0xA7FF, 0xAB30..=0xABBF];
        for c in cased
            .into_iter()
            .chain([0xFB00..=0xFFFF])
            .flatten()
            .filter_map(char::from_u32)
        {
            let (s, k) = (c.to_string(), skeleton(&c.to_string()));
            assert_eq!(skeleton(&k), k, "{c:?}");
            assert_eq!(skeleton(&s.to_uppercase()), k, "{c:?}");
            assert_eq!(skeleton(&s.to_lowercase()), k, "{c:?}");
        }
    }

    #[test]
    fn issues_are_deduplicated_ordered_and_serialised_with_their_kind() {
        let name = p("\u{202E}Je\u{200B}an\u{202E}\n\u{200B} [Ministere\tdes\nArmees]");
        let issues = [BidiControl, Invisible, Control, lookalike(ARMEES)];
        assert_eq!(name.issues, issues);
        let expected = json!({"name": "Jean", "organisation": "Ministere des Armees", "issues": [
            {"kind": "bidi_control"}, {"kind": "invisible"}, {"kind": "control"},
            {"kind": "lookalike_organisation", "of": ARMEES},
        ]});
        assert_eq!(serde_json::to_value(&name).ok(), Some(expected));
        #[rustfmt::skip]
        let rest = [(NoOrganisation, "no_organisation"), (NestedBrackets, "nested_brackets"),
            (UnbalancedBrackets, "unbalanced_brackets"), (EmptyName, "empty_name"),
            (TooLong, "too_long"), (MixedScripts, "mixed_scripts")];
        for (issue, kind) in rest {
            assert_eq!(
                serde_json::to_value(issue).ok(),
                Some(json!({ "kind": kind }))
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Properties

    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig {
            cases: n,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Brackets, bidi, zero-width, combining marks, controls, spaces, Cyrillic and Greek.
    const HOSTILE: &str = "[]［］【】⟦⟧﹇﹈\u{202E}\u{2066}\u{200E}\u{200B}\u{200D}\u{FEFF}\u{AD}\
        \u{E0041}\u{FE0F}\u{3164}\u{301}\u{308}\u{327}\u{338}\u{345}\n\t\u{85}  \u{A0}\u{3000}\
        аАоеοΑéeJM…ßİςΣ01:@";

    fn arb_text() -> impl Strategy<Value = String> {
        let biased =
            || prop_oneof![3 => select(HOSTILE.chars().collect::<Vec<_>>()), 1 => any::<char>()];
        prop_oneof![
            prop::collection::vec(biased(), 0..40),
            prop::collection::vec(biased(), 120..300),
            prop::collection::vec(any::<char>(), 0..40),
        ]
        .prop_map(String::from_iter)
    }

    fn arb_hidden() -> impl Strategy<Value = Vec<(Index, char)>> {
        let hidden: Vec<char> = BIDI.chars().chain(INVISIBLE.chars()).collect();
        prop::collection::vec((any::<Index>(), select(hidden)), 0..8)
    }

    /// `text` with each `(place, c)` inserted at a char boundary.
    fn insert(text: &str, inserts: &[(Index, char)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for (place, c) in inserts {
            chars.insert(place.index(chars.len() + 1), *c);
        }
        chars.into_iter().collect()
    }

    fn assert_neutral(text: &str) -> Result<(), TestCaseError> {
        let listed = [BIDI, INVISIBLE, CONTROLS, OPEN, CLOSE].concat();
        for c in text.chars() {
            prop_assert!(!listed.contains(c) && !c.is_control(), "{c:?} in {text:?}");
            prop_assert!(!is_bidi_control(c) && !is_invisible(c) && bracket(c).is_none());
        }
        Ok(())
    }

    fn assert_well_formed(name: &ParsedName) -> Result<(), TestCaseError> {
        prop_assert!(!name.name.is_empty() && name.name.chars().count() <= MAX_NAME_CHARS);
        assert_neutral(&name.name)?;
        if let Some(organisation) = &name.organisation {
            assert_neutral(organisation)?;
            let chars = organisation.chars().count();
            prop_assert!(chars > 0 && chars <= MAX_ORGANISATION_CHARS);
        }
        let shown = name.shown();
        prop_assert!(shown.trim() == shown && !shown.contains("  "), "{shown:?}");
        let (organisation, issues) = (&name.organisation, &name.issues);
        prop_assert_eq!(organisation.is_none(), issues.contains(&NoOrganisation));
        prop_assert!(issues.windows(2).all(|w| w[0] < w[1]), "{issues:?}");
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(512))]

        #[test]
        fn parse_output_is_neutral_and_bounded(text in arb_text(), user_id in arb_text()) {
            assert_well_formed(&parse(Some(&text), &user_id, &known()))?;
            assert_well_formed(&parse(Some(&text), USER, &known()))?;
            assert_well_formed(&parse(None, &user_id, &known()))?;
        }

        #[test]
        fn parse_is_idempotent_on_its_shown_form(text in arb_text()) {
            let first = p(&text);
            let again = p(&first.shown());
            prop_assert_eq!(&again.name, &first.name);
            prop_assert_eq!(&again.organisation, &first.organisation);
            let mut kept = first.issues.clone();
            kept.retain(|issue| matches!(issue,
                NoOrganisation | MixedScripts | NameIssue::LookalikeOrganisation { .. }));
            prop_assert_eq!(again.issues, kept);
        }

        #[test]
        fn hidden_chars_change_nothing_but_the_issues(
            name in "[A-ZÉ][a-zéèçа-я]{1,8}( [A-ZА-Я][a-zé]{1,8}){0,2}",
            organisation in "[A-ZÉ][a-zéè]{1,10}( [a-zé]{1,10}){0,3}",
            hidden in arb_hidden(),
        ) {
            let clean = p(&format!("{name} [{organisation}]"));
            let dirty = p(&insert(&clean.shown(), &hidden));
            prop_assert_eq!(&dirty.name, &clean.name);
            prop_assert_eq!(&dirty.organisation, &clean.organisation);
            let mut expected = clean.issues.clone();
            if hidden.iter().any(|&(_, c)| BIDI.contains(c)) {
                expected.push(BidiControl);
            }
            if hidden.iter().any(|&(_, c)| INVISIBLE.contains(c)) {
                expected.push(Invisible);
            }
            expected.sort();
            prop_assert_eq!(dirty.issues, expected);
        }

        #[test]
        fn skeleton_is_stable_case_blind_and_blind_to_hidden_chars(
            text in arb_text(),
            hidden in arb_hidden(),
        ) {
            let k = skeleton(&text);
            prop_assert!(k.chars().all(char::is_alphanumeric));
            prop_assert_eq!(&skeleton(&k), &k);
            prop_assert_eq!(&skeleton(&text.to_uppercase()), &k);
            prop_assert_eq!(&skeleton(&text.to_lowercase()), &k);
            prop_assert_eq!(&skeleton(&insert(&text, &hidden)), &k);
        }
    }
}
