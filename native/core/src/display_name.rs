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
    let name = match name.is_empty() {
        true => fallback_name(user_id, &mut issues),
        false => name,
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

/// The skeleton of `s` for lookalike comparison: NFKD, case folded, combining marks dropped,
/// Cyrillic and Greek lookalikes of Latin letters (and `0`, `1`) mapped to them, and every
/// char that is not alphanumeric dropped, so `Ministère des Armées`, `ministere-des-armees` and
/// `Ministère des Аrmées` (Cyrillic `А`) all give `ministeredesarmees`.
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
