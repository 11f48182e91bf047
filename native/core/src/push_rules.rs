//! Local evaluation of Matrix push rules (Client-Server API, "Push Notifications" → "Push
//! Rules", v1.11 to v1.17), for the persistent-connection mode: every decrypted event is run
//! against the user's `m.push_rules` global account data to decide whether it notifies, and
//! whether it highlights and with which sound.
//!
//! - [`PushRules::from_account_data`] reads the content of the `m.push_rules` account data;
//!   [`PushRules::server_default`] builds the spec's predefined rules, for an account that has
//!   none yet. The server sends the full ruleset, defaults included, so the two are never
//!   merged: what the server sends is what is used.
//! - [`PushRules::evaluate`] takes the *plaintext* event in client format (`type`, `sender`,
//!   `content`, `state_key`) and what the client knows of the room ([`PushContext`]) and
//!   returns a [`PushDecision`].
//!
//! ## Semantics (spec, and ruma where the spec is silent)
//!
//! - Kinds are tried in the order override → content → room → sender → underride; in a
//!   kind, rules are tried in the order the server sent them; the first *enabled* rule that matches
//!   decides, and no match means no notification.
//! - `.m.rule.master` is tried before every other override rule wherever the server put it
//!   ("always a higher priority than any other rule, even user defined ones").
//! - **An event sent by the user never notifies** ("Homeservers MUST NOT notify the Push
//!   Gateway for events that the user has sent themselves"): no rule is even tried.
//! - A rule with no conditions always matches; a condition of an unknown kind, or of a known
//!   kind whose parameters are missing or unusable, never matches, so its rule never does.
//! - The legacy mention rules (`.m.rule.contains_display_name`, `.m.rule.roomnotif`,
//!   `.m.rule.contains_user_name`) are skipped when the event's content has an `m.mentions`
//!   property (spec v1.7: they "should only be enabled if the event does not have an
//!   `m.mentions` property"; ruma does the same).
//! - Actions: `notify` notifies. The historical `dont_notify` and `coalesce` are ignored, as
//!   the spec requires (so `["dont_notify"]` and `["coalesce"]` both equal `[]`: no
//!   notification), and so is every unknown action. Of the tweaks, the first `highlight` (no
//!   `value` means `true`) and the first `sound` with a string value decide. Highlight and
//!   sound are reported only for an event that notifies.
//! - `event_match` is a case-insensitive glob (`*`, `?`) on the whole string value; on
//!   `content.body` it must match a substring that starts and ends at a word boundary (the
//!   spec's word characters are ASCII only: `[A-Za-z0-9_]`). A value that is not a string never
//!   matches, even `*`. The key `room_id` is the room of the [`PushContext`].
//! - `event_property_is` and `event_property_contains` compare canonical-JSON scalars exactly
//!   (strings, booleans, `null`, integers in ±(2⁵³−1); no floats, no casts).
//! - Keys are dot-separated paths where `\.` and `\\` are an escaped dot and backslash, any
//!   other `\x` a literal backslash then `x` (spec appendix, MSC3873). Paths go through objects
//!   only, never into arrays.
//!
//! ## Deliberate choices
//!
//! - **The room is the context's, not the event's.** Room rules and `event_match` on `room_id`
//!   use [`PushContext::room_id`], the room the client received the event in: a `/sync`
//!   timeline event has no `room_id`, and the one inside a Megolm plaintext is written by the
//!   sender, who must not be able to dodge a muted room's rule by claiming another room.
//! - **The display name is matched literally**, not as a glob (ruma and Synapse use it as a
//!   pattern, so a display name `*` would highlight every message); an empty name never matches.
//! - **Case folding is char by char**: a char whose lowercase is one char that keeps its
//!   ASCII-ness is folded to it, any other is kept as is, so positions and word boundaries are
//!   those of the original text.
//!
//! ## Hostile input
//!
//! The rules are account data the homeserver can rewrite, and the event comes from any member
//! of the room. Nothing here panics on any JSON, and the work is bounded:
//! - at most [`MAX_RULES_PER_KIND`] rules of each kind are kept (the rest, lowest priority, are
//!   dropped with a warning), at most [`MAX_CONDITIONS_PER_RULE`] conditions a rule;
//! - a glob pattern, a key or a display name longer than [`MAX_PATTERN_CHARS`] /
//!   [`MAX_KEY_CHARS`] chars never matches;
//! - the glob matcher is the classic greedy wildcard algorithm (the pattern split at its `*`,
//!   each segment matched at its leftmost place, never revisited): no backtracking, so
//!   `O(pattern × value)` in the worst case, whatever the number of `*`.
//!
//! So one evaluation costs at most `5 × MAX_RULES_PER_KIND × MAX_CONDITIONS_PER_RULE` condition
//! checks of `O(MAX_PATTERN_CHARS × event size)` each. Nothing is logged but counts and kinds:
//! never a rule id (a content rule's id is often its keyword, a room rule's the room), a
//! pattern, a display name or anything from the event.
//!
//! ## Left out
//!
//! Unstable extensions (MSC3768 `notify_in_app`, MSC3931 `room_version_supports`, MSC4306
//! thread subscriptions and the `postcontent` kind, MSC3930 poll rules) are unknown here: such
//! conditions never match, such actions are ignored. Room version 12 creators, whose power is
//! above any number, are the caller's to map (to `i64::MAX`).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};

/// Most rules kept of each kind; the ones after (the lowest priority) are dropped.
pub const MAX_RULES_PER_KIND: usize = 1_000;
/// Most conditions of a rule; a rule with more is dropped.
pub const MAX_CONDITIONS_PER_RULE: usize = 32;
/// Longest glob pattern (and display name) in chars; a longer one never matches.
pub const MAX_PATTERN_CHARS: usize = 512;
/// Longest dot-separated key in chars; a condition with a longer one never matches.
pub const MAX_KEY_CHARS: usize = 512;

/// The default power level needed for the `room` notification (`@room`).
const DEFAULT_ROOM_NOTIFICATION_LEVEL: i64 = 50;
/// The largest integer canonical JSON allows (2⁵³ − 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// The rule that silences everything when enabled; tried first of all.
const MASTER_RULE_ID: &str = ".m.rule.master";
/// Legacy mention rules, skipped for an event with `content.m.mentions`.
const LEGACY_MENTION_RULE_IDS: [&str; 3] = [
    ".m.rule.contains_display_name",
    ".m.rule.roomnotif",
    ".m.rule.contains_user_name",
];

// ---------------------------------------------------------------------------------------------
// Errors

/// Why push rules could not be built.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PushRulesError {
    /// The server's `m.push_rules` content lacks a shape the evaluator relies on (a fault of
    /// the server: the caller can fall back to [`PushRules::server_default`]).
    #[error("malformed m.push_rules content: {0}")]
    Malformed(#[from] MalformedPushRules),
    /// The caller's user id is not of the form `@localpart:server` (a caller mistake).
    #[error("not a user id: {user_id:?}")]
    InvalidUserId {
        /// The refused user id.
        user_id: String,
    },
}

/// What is wrong with an `m.push_rules` content.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPushRules {
    /// The content is not a JSON object.
    #[error("the content is a JSON {found}, not an object")]
    NotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// The content has no `global` ruleset.
    #[error("the content has no `global` ruleset")]
    MissingGlobal,
    /// `global` is not a JSON object.
    #[error("`global` is a JSON {found}, not an object")]
    GlobalNotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A kind of `global` (`override`, …) is present but not an array.
    #[error("`global.{kind}` is a JSON {found}, not an array")]
    KindNotAnArray {
        /// Which kind.
        kind: RuleKind,
        /// The JSON type found instead.
        found: &'static str,
    },
}

/// The name of a JSON value's type, for errors.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Public types

/// A kind of push rule, in the order the kinds are tried (the discriminant is that rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `override`: highest priority, with conditions.
    Override = 0,
    /// `content`: a glob `pattern` on the words of `content.body`.
    Content = 1,
    /// `room`: every event of the room whose id is the rule id.
    Room = 2,
    /// `sender`: every event of the user whose id is the rule id.
    Sender = 3,
    /// `underride`: lowest priority, with conditions.
    Underride = 4,
}

impl RuleKind {
    /// Every kind, in the order they are tried.
    pub const ALL: [RuleKind; 5] = [
        RuleKind::Override,
        RuleKind::Content,
        RuleKind::Room,
        RuleKind::Sender,
        RuleKind::Underride,
    ];

    /// The kind's key in the `global` ruleset (`override`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Override => "override",
            RuleKind::Content => "content",
            RuleKind::Room => "room",
            RuleKind::Sender => "sender",
            RuleKind::Underride => "underride",
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the client knows of the room and the user when an event is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushContext {
    /// The user's Matrix id (`@alice:example.org`): their own events never notify.
    pub user_id: String,
    /// The room the event was received in: room rules and `event_match` on `room_id` use it,
    /// never the event's own `room_id`.
    pub room_id: String,
    /// The user's display name in that room (`contains_display_name`); `None` or empty: that
    /// condition never matches.
    pub display_name: Option<String>,
    /// The room's joined member count (`room_member_count`).
    pub member_count: u64,
    /// The power level of the event's sender (`users[sender]` of `m.room.power_levels`, else
    /// `users_default`; `i64::MAX` for a room version 12 creator).
    pub sender_power_level: i64,
    /// The `notifications` map of `m.room.power_levels`; a missing `room` is 50, any other
    /// missing key makes `sender_notification_permission` never match.
    pub notification_power_levels: BTreeMap<String, i64>,
}

impl PushContext {
    /// A context with no display name, a sender of power level 0 and the default
    /// notification power levels (`room`: 50).
    pub fn new(user_id: impl Into<String>, room_id: impl Into<String>, member_count: u64) -> Self {
        Self {
            user_id: user_id.into(),
            room_id: room_id.into(),
            display_name: None,
            member_count,
            sender_power_level: 0,
            notification_power_levels: BTreeMap::new(),
        }
    }

    /// The power level the sender needs for the notification `key`, if known.
    fn notification_level(&self, key: &str) -> Option<i64> {
        match self.notification_power_levels.get(key) {
            Some(level) => Some(*level),
            None if key == "room" => Some(DEFAULT_ROOM_NOTIFICATION_LEVEL),
            None => None,
        }
    }
}

/// The outcome of [`PushRules::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushDecision {
    /// Whether the event notifies.
    pub notify: bool,
    /// Whether it is highlighted (a mention); always `false` when it does not notify.
    pub highlight: bool,
    /// The sound to play (`default`, `ring`, a file name); always `None` when it does not
    /// notify.
    pub sound: Option<String>,
    /// The kind of the rule that decided; `None` when no rule matched or the event is the
    /// user's own.
    pub rule_kind: Option<RuleKind>,
    /// The id of the rule that decided; `None` when no rule matched or the event is the
    /// user's own.
    pub rule_id: Option<String>,
}

/// A user's push ruleset (`global` of `m.push_rules`), ready to evaluate events.
///
/// Its `Debug` shows how many rules each kind has, never a rule: a content rule's id and
/// pattern are the user's keywords.
#[derive(Clone)]
pub struct PushRules {
    /// Rules of each kind in [`RuleKind::ALL`] order, each in priority order.
    kinds: [Vec<Rule>; 5],
    /// Rules dropped at parsing (malformed, or over [`MAX_RULES_PER_KIND`]).
    ignored: usize,
}

impl fmt::Debug for PushRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { kinds, ignored } = self;
        let mut out = f.debug_struct("PushRules");
        for (kind, rules) in RuleKind::ALL.iter().zip(kinds) {
            out.field(kind.as_str(), &rules.len());
        }
        out.field("ignored", ignored).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Parsed rules

/// One rule, parsed.
#[derive(Clone)]
struct Rule {
    rule_id: String,
    enabled: bool,
    matcher: Matcher,
    actions: Actions,
}

/// When a rule matches.
#[derive(Clone)]
enum Matcher {
    /// Override and underride: all the conditions hold (none: always).
    Conditions(Vec<Condition>),
    /// Content: the glob matches words of `content.body`; `None`: a missing or too long
    /// pattern, never matches.
    BodyPattern(Option<Glob>),
    /// Room: the context's room id is the rule id.
    Room,
    /// Sender: the event's sender is the rule id.
    Sender,
}

/// One condition, parsed; any unknown or unusable one is [`Condition::Never`].
#[derive(Clone)]
enum Condition {
    EventMatch { path: Path, glob: Glob },
    ContainsDisplayName,
    RoomMemberCount { op: Comparison, count: u64 },
    SenderNotificationPermission { key: String },
    EventPropertyIs { path: Path, value: Scalar },
    EventPropertyContains { path: Path, value: Scalar },
    Never,
}

/// A `room_member_count` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

/// A canonical-JSON scalar: what `event_property_is` / `_contains` compare.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
}

impl Scalar {
    /// The scalar of a JSON value, if it is one (no floats, integers in ±(2⁵³−1)).
    fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Scalar::Null),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => n
                .as_i64()
                .filter(|i| (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(i))
                .map(Scalar::Int),
            Value::String(s) => Some(Scalar::Str(s.clone())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// Whether `value` is this scalar, without allocating.
    fn equals_json(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::Null, Value::Null) => true,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Int(a), Value::Number(n)) => n.as_i64() == Some(*a),
            (Scalar::Str(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

/// The effect of a rule's actions.
#[derive(Clone, Default)]
struct Actions {
    notify: bool,
    highlight: bool,
    sound: Option<String>,
}

/// A dot-separated key, split into its property names.
#[derive(Clone, PartialEq, Eq)]
struct Path(Vec<String>);

impl Path {
    /// Splits `key` at its unescaped dots; `\.` and `\\` are a dot and a backslash, any other
    /// backslash is literal. `None` if longer than [`MAX_KEY_CHARS`].
    fn parse(key: &str) -> Option<Self> {
        if key.chars().count() > MAX_KEY_CHARS {
            return None;
        }
        let mut parts = vec![String::new()];
        let mut chars = key.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('.' | '\\')) => {
                        chars.next();
                        push_char(&mut parts, next);
                    }
                    _ => push_char(&mut parts, '\\'),
                },
                '.' => parts.push(String::new()),
                c => push_char(&mut parts, c),
            }
        }
        Some(Path(parts))
    }

    /// Whether this is exactly `parts`.
    fn is(&self, parts: &[&str]) -> bool {
        self.0.len() == parts.len() && self.0.iter().zip(parts).all(|(a, b)| a == b)
    }

    /// The value at this path in `event`, through objects only.
    fn resolve<'e>(&self, event: &'e Value) -> Option<&'e Value> {
        self.0
            .iter()
            .try_fold(event, |value, name| value.as_object()?.get(name))
    }
}

/// Appends `c` to the last part (there is always one).
fn push_char(parts: &mut [String], c: char) {
    if let Some(last) = parts.last_mut() {
        last.push(c);
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

impl PushRules {
    /// Reads the content of the `m.push_rules` global account data
    /// (`{"global": {"override": [...], "content": [...], ...}}`).
    ///
    /// Strict about the shapes it relies on: the content and its `global` must be objects, and
    /// each kind present must be an array (a missing kind is empty). Tolerant inside: a rule
    /// that is not an object or lacks a string `rule_id`, a boolean `enabled` or an `actions`
    /// array is dropped (with a warning, as are rules after the first [`MAX_RULES_PER_KIND`]
    /// of a kind); a condition of an unknown kind never matches; an unknown action is ignored.
    pub fn from_account_data(content: &Value) -> Result<Self, PushRulesError> {
        let object = content.as_object().ok_or(MalformedPushRules::NotAnObject {
            found: json_type(content),
        })?;
        let global = object
            .get("global")
            .ok_or(MalformedPushRules::MissingGlobal)?;
        let global = global
            .as_object()
            .ok_or(MalformedPushRules::GlobalNotAnObject {
                found: json_type(global),
            })?;

        let mut kinds: [Vec<Rule>; 5] = Default::default();
        let mut ignored = 0;
        let mut unusable_conditions = 0;
        for (kind, rules) in RuleKind::ALL.into_iter().zip(kinds.iter_mut()) {
            let Some(list) = global.get(kind.as_str()) else {
                continue;
            };
            let list = list.as_array().ok_or(MalformedPushRules::KindNotAnArray {
                kind,
                found: json_type(list),
            })?;
            let over_cap = list.len().saturating_sub(MAX_RULES_PER_KIND);
            let mut malformed = 0;
            for raw in list.iter().take(MAX_RULES_PER_KIND) {
                match Rule::parse(kind, raw) {
                    Some(rule) => {
                        unusable_conditions += rule.unusable_conditions();
                        rules.push(rule);
                    }
                    None => malformed += 1,
                }
            }
            if over_cap + malformed > 0 {
                tracing::warn!(
                    kind = kind.as_str(),
                    malformed,
                    over_cap,
                    "push rules: rules ignored"
                );
            }
            ignored += over_cap + malformed;
        }
        // `.m.rule.master` comes before every other override rule, wherever it was sent.
        let overrides = &mut kinds[RuleKind::Override as usize];
        if let Some(at) = overrides.iter().position(|r| r.rule_id == MASTER_RULE_ID) {
            let master = overrides.remove(at);
            overrides.insert(0, master);
        }
        if unusable_conditions > 0 {
            tracing::debug!(
                unusable_conditions,
                "push rules: unknown or unusable conditions (their rules never match)"
            );
        }
        Ok(Self { kinds, ignored })
    }

    /// The spec's predefined rules (v1.11, legacy mention rules included) for `user_id`, for an
    /// account that has no `m.push_rules` yet.
    ///
    /// Override: `.m.rule.master` (disabled), `.m.rule.suppress_notices`,
    /// `.m.rule.invite_for_me`, `.m.rule.member_event`, `.m.rule.is_user_mention`,
    /// `.m.rule.contains_display_name`, `.m.rule.is_room_mention`, `.m.rule.roomnotif`,
    /// `.m.rule.tombstone`, `.m.rule.reaction`, `.m.rule.room.server_acl`,
    /// `.m.rule.suppress_edits`; content: `.m.rule.contains_user_name`; underride:
    /// `.m.rule.call`, `.m.rule.encrypted_room_one_to_one`, `.m.rule.room_one_to_one`,
    /// `.m.rule.message`, `.m.rule.encrypted`.
    pub fn server_default(user_id: &str) -> Result<Self, PushRulesError> {
        let localpart = user_id
            .strip_prefix('@')
            .and_then(|rest| rest.split_once(':'))
            .map(|(localpart, _)| localpart)
            .filter(|l| !l.is_empty() && user_id.len() <= 255)
            .ok_or_else(|| PushRulesError::InvalidUserId {
                user_id: user_id.to_owned(),
            })?;
        Self::from_account_data(&predefined_rules(user_id, localpart))
    }

    /// Decides whether `event` notifies the user.
    ///
    /// `event` is the plaintext event in client format (in an encrypted room, the decrypted
    /// one); anything else, even not an object, is evaluated without panicking (its missing
    /// properties match nothing). An event whose `sender` is [`PushContext::user_id`] never
    /// notifies, whatever the rules.
    pub fn evaluate(&self, event: &Value, context: &PushContext) -> PushDecision {
        let view = EventView::new(event);
        if view.sender() == Some(context.user_id.as_str()) {
            return PushDecision::default();
        }
        for (kind, rules) in RuleKind::ALL.into_iter().zip(&self.kinds) {
            for rule in rules {
                if rule.matches(&view, context) {
                    let Actions {
                        notify,
                        highlight,
                        sound,
                    } = &rule.actions;
                    tracing::trace!(
                        kind = kind.as_str(),
                        notify,
                        highlight,
                        "push rules evaluated"
                    );
                    return PushDecision {
                        notify: *notify,
                        highlight: *notify && *highlight,
                        sound: sound.clone().filter(|_| *notify),
                        rule_kind: Some(kind),
                        rule_id: Some(rule.rule_id.clone()),
                    };
                }
            }
        }
        tracing::trace!("push rules evaluated: no rule matched");
        PushDecision::default()
    }
}

impl Rule {
    /// Parses one rule of `kind`; `None` if malformed.
    fn parse(kind: RuleKind, raw: &Value) -> Option<Self> {
        let object = raw.as_object()?;
        let rule_id = object.get("rule_id")?.as_str()?.to_owned();
        let enabled = object.get("enabled")?.as_bool()?;
        let actions = Actions::parse(object.get("actions")?.as_array()?);
        let matcher = match kind {
            RuleKind::Override | RuleKind::Underride => {
                let conditions = match object.get("conditions") {
                    None => Vec::new(),
                    Some(list) => {
                        let list = list.as_array()?;
                        if list.len() > MAX_CONDITIONS_PER_RULE {
                            return None;
                        }
                        list.iter().map(Condition::parse).collect()
                    }
                };
                Matcher::Conditions(conditions)
            }
            RuleKind::Content => Matcher::BodyPattern(
                object
                    .get("pattern")
                    .and_then(Value::as_str)
                    .and_then(Glob::new),
            ),
            RuleKind::Room => Matcher::Room,
            RuleKind::Sender => Matcher::Sender,
        };
        Some(Self {
            rule_id,
            enabled,
            matcher,
            actions,
        })
    }

    /// How many of its conditions can never match (for the parse summary).
    fn unusable_conditions(&self) -> usize {
        match &self.matcher {
            Matcher::Conditions(conditions) => conditions
                .iter()
                .filter(|c| matches!(c, Condition::Never))
                .count(),
            Matcher::BodyPattern(glob) => usize::from(glob.is_none()),
            Matcher::Room | Matcher::Sender => 0,
        }
    }

    /// Whether this rule is enabled and matches.
    fn matches(&self, event: &EventView<'_>, context: &PushContext) -> bool {
        if !self.enabled {
            return false;
        }
        if event.has_mentions() && LEGACY_MENTION_RULE_IDS.contains(&self.rule_id.as_str()) {
            return false;
        }
        match &self.matcher {
            Matcher::Conditions(conditions) => conditions.iter().all(|c| c.holds(event, context)),
            Matcher::BodyPattern(glob) => match (glob, event.body()) {
                (Some(glob), Some(body)) => glob.matches_words(body),
                _ => false,
            },
            Matcher::Room => self.rule_id == context.room_id,
            Matcher::Sender => event.sender() == Some(self.rule_id.as_str()),
        }
    }
}

impl Actions {
    /// The effect of an `actions` array; unknown and historical actions are ignored.
    fn parse(list: &[Value]) -> Self {
        let mut actions = Actions::default();
        let mut highlight = None;
        for action in list {
            match action {
                Value::String(name) if name == "notify" => actions.notify = true,
                // `dont_notify`, `coalesce` (historical: MUST be ignored) and unknown actions.
                Value::String(_) => {}
                Value::Object(tweak) => match tweak.get("set_tweak").and_then(Value::as_str) {
                    Some("highlight") if highlight.is_none() => match tweak.get("value") {
                        None => highlight = Some(true),
                        Some(Value::Bool(b)) => highlight = Some(*b),
                        Some(_) => {}
                    },
                    Some("sound") if actions.sound.is_none() => {
                        actions.sound = tweak
                            .get("value")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        actions.highlight = highlight.unwrap_or(false);
        actions
    }
}

impl Condition {
    /// Parses one condition; an unknown kind or unusable parameters give [`Condition::Never`].
    fn parse(raw: &Value) -> Self {
        Self::try_parse(raw).unwrap_or(Condition::Never)
    }

    fn try_parse(raw: &Value) -> Option<Self> {
        let object = raw.as_object()?;
        let path = |object: &Map<String, Value>| Path::parse(object.get("key")?.as_str()?);
        let scalar = |object: &Map<String, Value>| Scalar::from_json(object.get("value")?);
        Some(match object.get("kind")?.as_str()? {
            "event_match" => Condition::EventMatch {
                path: path(object)?,
                glob: Glob::new(object.get("pattern")?.as_str()?)?,
            },
            "contains_display_name" => Condition::ContainsDisplayName,
            "room_member_count" => {
                let (op, count) = parse_member_count(object.get("is")?.as_str()?)?;
                Condition::RoomMemberCount { op, count }
            }
            "sender_notification_permission" => Condition::SenderNotificationPermission {
                key: object.get("key")?.as_str()?.to_owned(),
            },
            "event_property_is" => Condition::EventPropertyIs {
                path: path(object)?,
                value: scalar(object)?,
            },
            "event_property_contains" => Condition::EventPropertyContains {
                path: path(object)?,
                value: scalar(object)?,
            },
            _ => Condition::Never,
        })
    }

    /// Whether this condition holds for `event` in `context`.
    fn holds(&self, event: &EventView<'_>, context: &PushContext) -> bool {
        match self {
            Condition::EventMatch { path, glob } => {
                if path.is(&["content", "body"]) {
                    return event.body().is_some_and(|body| glob.matches_words(body));
                }
                let value = if path.is(&["room_id"]) {
                    Some(context.room_id.as_str())
                } else {
                    path.resolve(event.event).and_then(Value::as_str)
                };
                value.is_some_and(|v| glob.matches_whole(&fold_str(v)))
            }
            Condition::ContainsDisplayName => {
                let Some(name) = context.display_name.as_deref() else {
                    return false;
                };
                match (Glob::literal(name), event.body()) {
                    (Some(glob), Some(body)) => glob.matches_words(body),
                    _ => false,
                }
            }
            Condition::RoomMemberCount { op, count } => {
                let members = context.member_count;
                match op {
                    Comparison::Eq => members == *count,
                    Comparison::Lt => members < *count,
                    Comparison::Gt => members > *count,
                    Comparison::Le => members <= *count,
                    Comparison::Ge => members >= *count,
                }
            }
            Condition::SenderNotificationPermission { key } => context
                .notification_level(key)
                .is_some_and(|needed| context.sender_power_level >= needed),
            Condition::EventPropertyIs { path, value } => path
                .resolve(event.event)
                .is_some_and(|found| value.equals_json(found)),
            Condition::EventPropertyContains { path, value } => path
                .resolve(event.event)
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|item| value.equals_json(item))),
            Condition::Never => false,
        }
    }
}

/// Parses `is` of `room_member_count`: an optional `==`, `<`, `>`, `<=` or `>=`, then
/// decimal digits only.
fn parse_member_count(is: &str) -> Option<(Comparison, u64)> {
    let (op, digits) = [
        ("==", Comparison::Eq),
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ]
    .into_iter()
    .find_map(|(prefix, op)| is.strip_prefix(prefix).map(|rest| (op, rest)))
    .unwrap_or((Comparison::Eq, is));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((op, digits.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// The event

/// The event being evaluated, with its folded `content.body` computed once.
struct EventView<'e> {
    event: &'e Value,
    body: OnceCell<Option<Vec<char>>>,
}

impl<'e> EventView<'e> {
    fn new(event: &'e Value) -> Self {
        Self {
            event,
            body: OnceCell::new(),
        }
    }

    fn sender(&self) -> Option<&'e str> {
        self.event.get("sender").and_then(Value::as_str)
    }

    /// `content.body` folded, if it is a string.
    fn body(&self) -> Option<&[char]> {
        self.body
            .get_or_init(|| {
                self.event
                    .get("content")
                    .and_then(|c| c.get("body"))
                    .and_then(Value::as_str)
                    .map(fold_str)
            })
            .as_deref()
    }

    /// Whether the content has an `m.mentions` property (whatever its value).
    fn has_mentions(&self) -> bool {
        self.event
            .get("content")
            .and_then(Value::as_object)
            .is_some_and(|c| c.contains_key("m.mentions"))
    }
}

// ---------------------------------------------------------------------------------------------
// Glob matching

/// The case folding of one char: its lowercase when that is one char of the same ASCII-ness,
/// else the char itself (so word boundaries are unchanged by folding).
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) if !l.is_ascii() => l,
        _ => c,
    }
}

fn fold_str(s: &str) -> Vec<char> {
    s.chars().map(fold).collect()
}

/// A word character of the spec: `[A-Za-z0-9_]`.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether a match may start at `at`: the start or end of the text, a non-word char before,
/// or a non-word char at `at`.
fn starts_word(text: &[char], at: usize) -> bool {
    match (at.checked_sub(1).and_then(|i| text.get(i)), text.get(at)) {
        (Some(&before), Some(&here)) => !is_word_char(before) || !is_word_char(here),
        _ => true,
    }
}

/// Whether a match may end at `at` (exclusive): the start or end of the text, a non-word char
/// after, or a non-word char last in the match.
fn ends_word(text: &[char], at: usize) -> bool {
    starts_word(text, at)
}

/// A compiled glob: the pattern split at its `*`, each segment a run of folded literal chars
/// (`Some`) and `?` (`None`).
///
/// With one segment the pattern has no `*`. With more, the first is anchored at the start of
/// the match, the last at its end, and the middle ones float: the classic greedy algorithm
/// puts each at its leftmost place and never revisits it (a later place could only leave less
/// room for the rest), so matching is `O(pattern × text)` whatever the number of `*`.
#[derive(Clone)]
struct Glob {
    segments: Vec<Vec<Option<char>>>,
}

impl Glob {
    /// Compiles `pattern` (`*`, `?` wildcards); `None` if over [`MAX_PATTERN_CHARS`].
    fn new(pattern: &str) -> Option<Self> {
        if pattern.chars().count() > MAX_PATTERN_CHARS {
            return None;
        }
        let segments = pattern
            .split('*')
            .map(|segment| {
                segment
                    .chars()
                    .map(|c| (c != '?').then(|| fold(c)))
                    .collect()
            })
            .collect();
        Some(Self { segments })
    }

    /// A glob of `text` taken literally (no wildcards); `None` if empty or too long.
    fn literal(text: &str) -> Option<Self> {
        if text.is_empty() || text.chars().count() > MAX_PATTERN_CHARS {
            return None;
        }
        Some(Self {
            segments: vec![text.chars().map(|c| Some(fold(c))).collect()],
        })
    }

    /// Whether the glob matches all of `text` (folded).
    fn matches_whole(&self, text: &[char]) -> bool {
        let Some((first, rest)) = self.segments.split_first() else {
            return text.is_empty();
        };
        let Some((last, middles)) = rest.split_last() else {
            return text.len() == first.len() && segment_at(first, text, 0);
        };
        let Some(tail) = text.len().checked_sub(last.len()) else {
            return false;
        };
        if tail < first.len() || !segment_at(first, text, 0) || !segment_at(last, text, tail) {
            return false;
        }
        let mut pos = first.len();
        for segment in middles {
            match find_segment(segment, text, pos, tail) {
                Some(at) => pos = at + segment.len(),
                None => return false,
            }
        }
        true
    }

    /// Whether the glob matches a part of `text` (folded) that starts and ends at word
    /// boundaries. An empty pattern matches only an empty text.
    fn matches_words(&self, text: &[char]) -> bool {
        let Some((first, rest)) = self.segments.split_first() else {
            return text.is_empty();
        };
        let n = text.len();
        let Some((last, middles)) = rest.split_last() else {
            if first.is_empty() {
                return text.is_empty();
            }
            return (0..=n).any(|s| {
                starts_word(text, s)
                    && segment_at(first, text, s)
                    && ends_word(text, s + first.len())
            });
        };
        // The earliest start is the best one: every later segment then has the most room.
        let Some(start) = (0..=n).find(|&s| starts_word(text, s) && segment_at(first, text, s))
        else {
            return false;
        };
        let mut pos = start + first.len();
        for segment in middles {
            match find_segment(segment, text, pos, n) {
                Some(at) => pos = at + segment.len(),
                None => return false,
            }
        }
        (pos..=n).any(|t| segment_at(last, text, t) && ends_word(text, t + last.len()))
    }
}

/// Whether `segment` matches `text` at `at` (false if it would run past the end).
fn segment_at(segment: &[Option<char>], text: &[char], at: usize) -> bool {
    at.checked_add(segment.len())
        .and_then(|end| text.get(at..end))
        .is_some_and(|window| {
            segment
                .iter()
                .zip(window)
                .all(|(p, c)| p.is_none_or(|p| p == *c))
        })
}

/// The leftmost place at or after `from` where `segment` matches and ends by `limit`.
fn find_segment(
    segment: &[Option<char>],
    text: &[char],
    from: usize,
    limit: usize,
) -> Option<usize> {
    let last_start = limit.checked_sub(segment.len())?;
    (from..=last_start).find(|&at| segment_at(segment, text, at))
}

// ---------------------------------------------------------------------------------------------
// Predefined rules

/// The spec's predefined rules (v1.11) as `m.push_rules` content, in priority order.
fn predefined_rules(user_id: &str, localpart: &str) -> Value {
    let sound_default = json!({"set_tweak": "sound", "value": "default"});
    let highlight = json!({"set_tweak": "highlight"});
    let type_is =
        |event_type: &str| json!({"kind": "event_match", "key": "type", "pattern": event_type});
    let no_state_key = json!({"kind": "event_match", "key": "state_key", "pattern": ""});
    let rule = |rule_id: &str, enabled: bool, conditions: Vec<Value>, actions: Vec<Value>| {
        json!({
            "rule_id": rule_id,
            "default": true,
            "enabled": enabled,
            "conditions": conditions,
            "actions": actions,
        })
    };
    let notify = || json!("notify");
    let two_members = json!({"kind": "room_member_count", "is": "2"});
    let room_permission = json!({"kind": "sender_notification_permission", "key": "room"});

    json!({
        "global": {
            "override": [
                rule(".m.rule.master", false, vec![], vec![]),
                rule(
                    ".m.rule.suppress_notices",
                    true,
                    vec![json!({
                        "kind": "event_match", "key": "content.msgtype", "pattern": "m.notice",
                    })],
                    vec![],
                ),
                rule(
                    ".m.rule.invite_for_me",
                    true,
                    vec![
                        type_is("m.room.member"),
                        json!({
                            "kind": "event_match", "key": "content.membership", "pattern": "invite",
                        }),
                        json!({"kind": "event_match", "key": "state_key", "pattern": user_id}),
                    ],
                    vec![notify(), sound_default.clone()],
                ),
                rule(".m.rule.member_event", true, vec![type_is("m.room.member")], vec![]),
                rule(
                    ".m.rule.is_user_mention",
                    true,
                    vec![json!({
                        "kind": "event_property_contains",
                        "key": "content.m\\.mentions.user_ids",
                        "value": user_id,
                    })],
                    vec![notify(), sound_default.clone(), highlight.clone()],
                ),
                rule(
                    ".m.rule.contains_display_name",
                    true,
                    vec![json!({"kind": "contains_display_name"})],
                    vec![notify(), sound_default.clone(), highlight.clone()],
                ),
                rule(
                    ".m.rule.is_room_mention",
                    true,
                    vec![
                        json!({
                            "kind": "event_property_is", "key": "content.m\\.mentions.room",
                            "value": true,
                        }),
                        room_permission.clone(),
                    ],
                    vec![notify(), highlight.clone()],
                ),
                rule(
                    ".m.rule.roomnotif",
                    true,
                    vec![
                        json!({"kind": "event_match", "key": "content.body", "pattern": "@room"}),
                        room_permission,
                    ],
                    vec![notify(), highlight.clone()],
                ),
                rule(
                    ".m.rule.tombstone",
                    true,
                    vec![type_is("m.room.tombstone"), no_state_key.clone()],
                    vec![notify(), highlight.clone()],
                ),
                rule(".m.rule.reaction", true, vec![type_is("m.reaction")], vec![]),
                rule(
                    ".m.rule.room.server_acl",
                    true,
                    vec![type_is("m.room.server_acl"), no_state_key],
                    vec![],
                ),
                rule(
                    ".m.rule.suppress_edits",
                    true,
                    vec![json!({
                        "kind": "event_property_is",
                        "key": "content.m\\.relates_to.rel_type",
                        "value": "m.replace",
                    })],
                    vec![],
                ),
            ],
            "content": [
                {
                    "rule_id": ".m.rule.contains_user_name",
                    "default": true,
                    "enabled": true,
                    "pattern": localpart,
                    "actions": [notify(), sound_default.clone(), highlight],
                },
            ],
            "room": [],
            "sender": [],
            "underride": [
                rule(
                    ".m.rule.call",
                    true,
                    vec![type_is("m.call.invite")],
                    vec![notify(), json!({"set_tweak": "sound", "value": "ring"})],
                ),
                rule(
                    ".m.rule.encrypted_room_one_to_one",
                    true,
                    vec![two_members.clone(), type_is("m.room.encrypted")],
                    vec![notify(), sound_default.clone()],
                ),
                rule(
                    ".m.rule.room_one_to_one",
                    true,
                    vec![two_members, type_is("m.room.message")],
                    vec![notify(), sound_default],
                ),
                rule(".m.rule.message", true, vec![type_is("m.room.message")], vec![notify()]),
                rule(".m.rule.encrypted", true, vec![type_is("m.room.encrypted")], vec![notify()]),
            ],
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use proptest::test_runner::Config as ProptestConfig;
    use serde_json::{Value, json};

    use super::*;

    const ME: &str = "@alice.martin:agent.interieur.tchap.gouv.fr";
    const BOB: &str = "@bob:agent.finances.tchap.gouv.fr";
    const ROOM: &str = "!salon:agent.interieur.tchap.gouv.fr";

    fn defaults() -> PushRules {
        PushRules::server_default(ME).unwrap()
    }

    fn context(members: u64) -> PushContext {
        PushContext {
            display_name: Some("Alice".to_owned()),
            ..PushContext::new(ME, ROOM, members)
        }
    }

    fn message(sender: &str, body: &str) -> Value {
        json!({
            "type": "m.room.message",
            "sender": sender,
            "room_id": ROOM,
            "event_id": "$e:agent.finances.tchap.gouv.fr",
            "content": {"msgtype": "m.text", "body": body},
        })
    }

    fn member_event(state_key: &str, membership: &str) -> Value {
        json!({
            "type": "m.room.member", "sender": BOB, "state_key": state_key,
            "content": {"membership": membership},
        })
    }

    /// The server's content after adding `rule` of `kind` first (as `PUT /pushrules` does).
    fn with_rule(kind: RuleKind, rule: Value) -> PushRules {
        let mut content = predefined_rules(ME, "alice.martin");
        content["global"][kind.as_str()]
            .as_array_mut()
            .unwrap()
            .insert(0, rule);
        PushRules::from_account_data(&content).unwrap()
    }

    fn muted_room(actions: Value) -> PushRules {
        with_rule(
            RuleKind::Room,
            json!({"rule_id": ROOM, "default": false, "enabled": true, "actions": actions}),
        )
    }

    fn glob_whole(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().matches_whole(&fold_str(text))
    }

    fn glob_words(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().matches_words(&fold_str(text))
    }

    // -- Default rules, realistic events ------------------------------------------------------

    #[test]
    fn server_default_parses_completely_in_spec_order() {
        let rules = defaults();
        assert_eq!(rules.ignored, 0);
        let ids = |kind: RuleKind| -> Vec<&str> {
            rules.kinds[kind as usize]
                .iter()
                .map(|r| r.rule_id.as_str())
                .collect()
        };
        assert_eq!(
            ids(RuleKind::Override),
            [
                ".m.rule.master",
                ".m.rule.suppress_notices",
                ".m.rule.invite_for_me",
                ".m.rule.member_event",
                ".m.rule.is_user_mention",
                ".m.rule.contains_display_name",
                ".m.rule.is_room_mention",
                ".m.rule.roomnotif",
                ".m.rule.tombstone",
                ".m.rule.reaction",
                ".m.rule.room.server_acl",
                ".m.rule.suppress_edits",
            ]
        );
        assert_eq!(ids(RuleKind::Content), [".m.rule.contains_user_name"]);
        assert_eq!(
            ids(RuleKind::Underride),
            [
                ".m.rule.call",
                ".m.rule.encrypted_room_one_to_one",
                ".m.rule.room_one_to_one",
                ".m.rule.message",
                ".m.rule.encrypted",
            ]
        );
        assert_eq!(
            rules
                .kinds
                .iter()
                .map(|k| k.iter().map(Rule::unusable_conditions).sum::<usize>())
                .sum::<usize>(),
            0
        );
        assert!(!rules.kinds[0][0].enabled, "master is disabled by default");
        assert_eq!(
            format!("{rules:?}"),
            "PushRules { override: 12, content: 1, room: 0, sender: 0, underride: 5, ignored: 0 }"
        );
    }

    #[test]
    fn server_default_refuses_a_malformed_user_id() {
        for bad in ["", "alice", "@alice", "@:server", "alice:server"] {
            assert!(matches!(
                PushRules::server_default(bad),
                Err(PushRulesError::InvalidUserId { .. })
            ));
        }
    }

    #[test]
    fn dm_notifies_with_sound_and_no_highlight() {
        let decision = defaults().evaluate(&message(BOB, "On se voit à 14h ?"), &context(2));
        assert_eq!(
            decision,
            PushDecision {
                notify: true,
                highlight: false,
                sound: Some("default".to_owned()),
                rule_kind: Some(RuleKind::Underride),
                rule_id: Some(".m.rule.room_one_to_one".to_owned()),
            }
        );
    }

    #[test]
    fn undecryptable_dm_event_notifies_as_encrypted_one_to_one() {
        let event = json!({
            "type": "m.room.encrypted", "sender": BOB,
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        });
        let decision = defaults().evaluate(&event, &context(2));
        assert!(decision.notify);
        assert_eq!(
            decision.rule_id.as_deref(),
            Some(".m.rule.encrypted_room_one_to_one")
        );
        let decision = defaults().evaluate(&event, &context(40));
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.encrypted"));
        assert_eq!(decision.sound, None);
    }

    #[test]
    fn large_room_message_notifies_without_highlight() {
        let decision = defaults().evaluate(&message(BOB, "Réunion reportée"), &context(250));
        assert!(decision.notify);
        assert!(!decision.highlight);
        assert_eq!(decision.sound, None);
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.message"));
    }

    #[test]
    fn muted_room_does_not_notify() {
        for actions in [json!([]), json!(["dont_notify"]), json!(["coalesce"])] {
            let rules = muted_room(actions);
            let decision = rules.evaluate(&message(BOB, "Réunion reportée"), &context(250));
            assert!(!decision.notify);
            assert!(!decision.highlight);
            assert_eq!(decision.rule_kind, Some(RuleKind::Room));
            assert_eq!(decision.rule_id.as_deref(), Some(ROOM));
            // Another room still notifies.
            let other = PushContext::new(ME, "!autre:agent.interieur.tchap.gouv.fr", 250);
            assert!(
                rules
                    .evaluate(&message(BOB, "Réunion reportée"), &other)
                    .notify
            );
        }
    }

    #[test]
    fn muted_room_rule_uses_the_context_room_not_the_event_claim() {
        let rules = muted_room(json!([]));
        let mut event = message(BOB, "Réunion reportée");
        event["room_id"] = json!("!ailleurs:example.org");
        assert!(!rules.evaluate(&event, &context(250)).notify);
    }

    #[test]
    fn user_id_mention_in_muted_room_notifies_and_highlights() {
        let rules = muted_room(json!(["dont_notify"]));
        let mut event = message(BOB, "Alice, peux-tu relire ?");
        event["content"]["m.mentions"] = json!({"user_ids": [ME]});
        let decision = rules.evaluate(&event, &context(250));
        assert!(decision.notify);
        assert!(decision.highlight);
        assert_eq!(decision.sound.as_deref(), Some("default"));
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.is_user_mention"));
    }

    #[test]
    fn display_name_mention_in_muted_room_notifies_and_highlights() {
        let rules = muted_room(json!([]));
        let decision = rules.evaluate(&message(BOB, "Merci ALICE !"), &context(250));
        assert!(decision.notify);
        assert!(decision.highlight);
        assert_eq!(
            decision.rule_id.as_deref(),
            Some(".m.rule.contains_display_name")
        );
        // Whole word only.
        assert!(
            !rules
                .evaluate(&message(BOB, "Merci Alicea"), &context(250))
                .notify
        );
        assert!(
            !rules
                .evaluate(&message(BOB, "MerciAlice"), &context(250))
                .notify
        );
        // No display name known: the condition never matches.
        let mut no_name = context(250);
        no_name.display_name = None;
        assert!(
            !rules
                .evaluate(&message(BOB, "Merci Alice"), &no_name)
                .notify
        );
    }

    #[test]
    fn display_name_is_matched_literally() {
        let mut ctx = context(250);
        ctx.display_name = Some("*".to_owned());
        let decision = defaults().evaluate(&message(BOB, "rien à voir"), &ctx);
        assert!(!decision.highlight);
        let decision = defaults().evaluate(&message(BOB, "une étoile * ici"), &ctx);
        assert!(decision.highlight);
    }

    #[test]
    fn legacy_mention_rules_are_off_when_the_event_has_m_mentions() {
        let mut event = message(BOB, "Merci Alice, et alice.martin aussi");
        event["content"]["m.mentions"] = json!({});
        let decision = defaults().evaluate(&event, &context(250));
        assert!(decision.notify);
        assert!(!decision.highlight);
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.message"));
    }

    #[test]
    fn legacy_user_name_content_rule_highlights() {
        // No display name: `.m.rule.contains_display_name` ("Alice") would match first.
        let ctx = PushContext::new(ME, ROOM, 250);
        let decision = defaults().evaluate(&message(BOB, "cc alice.martin"), &ctx);
        assert!(decision.highlight);
        assert_eq!(decision.rule_kind, Some(RuleKind::Content));
        assert_eq!(
            decision.rule_id.as_deref(),
            Some(".m.rule.contains_user_name")
        );
    }

    #[test]
    fn keyword_content_rule_matches_whole_words_only() {
        let rules = with_rule(
            RuleKind::Content,
            json!({
                "rule_id": "budget",
                "default": false,
                "enabled": true,
                "pattern": "budget",
                "actions": [
                    "notify",
                    {"set_tweak": "sound", "value": "caisse.ogg"},
                    {"set_tweak": "highlight", "value": false},
                ],
            }),
        );
        let hit = rules.evaluate(&message(BOB, "le budget 2027"), &context(250));
        assert_eq!(
            hit,
            PushDecision {
                notify: true,
                highlight: false,
                sound: Some("caisse.ogg".to_owned()),
                rule_kind: Some(RuleKind::Content),
                rule_id: Some("budget".to_owned()),
            }
        );
        let hit = rules.evaluate(&message(BOB, "Budget: validé"), &context(250));
        assert_eq!(hit.rule_kind, Some(RuleKind::Content));
        let miss = rules.evaluate(&message(BOB, "la ligne budgetaire"), &context(250));
        assert_eq!(miss.rule_id.as_deref(), Some(".m.rule.message"));
        let miss = rules.evaluate(&message(BOB, "sous_budget"), &context(250));
        assert_eq!(miss.rule_id.as_deref(), Some(".m.rule.message"));
    }

    #[test]
    fn enabled_master_rule_silences_everything() {
        let mut content = predefined_rules(ME, "alice.martin");
        // The master rule is tried first even when the server lists it last.
        let overrides = content["global"]["override"].as_array_mut().unwrap();
        let mut master = overrides.remove(0);
        master["enabled"] = json!(true);
        overrides.push(master);
        let rules = PushRules::from_account_data(&content).unwrap();

        let mut mention = message(BOB, "Alice ?");
        mention["content"]["m.mentions"] = json!({"user_ids": [ME]});
        let invite = member_event(ME, "invite");
        for event in [message(BOB, "salut"), mention, invite] {
            for members in [2, 250] {
                let decision = rules.evaluate(&event, &context(members));
                assert!(!decision.notify);
                assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.master"));
            }
        }
    }

    #[test]
    fn own_messages_never_notify() {
        let mut event = message(ME, "Alice alice.martin @room");
        event["content"]["m.mentions"] = json!({"user_ids": [ME], "room": true});
        // Even a rule that matches everything, and an enabled master rule.
        let rules = with_rule(
            RuleKind::Override,
            json!({
                "rule_id": "tout", "enabled": true, "conditions": [],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        );
        for members in [2, 250] {
            let mut ctx = context(members);
            ctx.sender_power_level = 100;
            assert_eq!(rules.evaluate(&event, &ctx), PushDecision::default());
            assert_eq!(defaults().evaluate(&event, &ctx), PushDecision::default());
        }
        // Someone else's identical event does notify.
        event["sender"] = json!(BOB);
        assert!(rules.evaluate(&event, &context(2)).notify);
    }

    #[test]
    fn edits_are_suppressed() {
        let mut edit = message(BOB, "* Réunion à 15h");
        edit["content"]["m.new_content"] = json!({"msgtype": "m.text", "body": "Réunion à 15h"});
        edit["content"]["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": "$orig"});
        for members in [2, 250] {
            let decision = defaults().evaluate(&edit, &context(members));
            assert!(!decision.notify);
            assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.suppress_edits"));
        }
        // A reply (another relation) still notifies.
        edit["content"]["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$orig"}});
        assert!(defaults().evaluate(&edit, &context(250)).notify);
    }

    #[test]
    fn notices_reactions_and_member_events_are_suppressed() {
        let mut notice = message(BOB, "Bot: sauvegarde terminée");
        notice["content"]["msgtype"] = json!("m.notice");
        let decision = defaults().evaluate(&notice, &context(2));
        assert!(!decision.notify);
        assert_eq!(
            decision.rule_id.as_deref(),
            Some(".m.rule.suppress_notices")
        );

        let reaction = json!({
            "type": "m.reaction", "sender": BOB,
            "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
        });
        assert!(!defaults().evaluate(&reaction, &context(2)).notify);

        let join = member_event(BOB, "join");
        assert_eq!(
            defaults().evaluate(&join, &context(2)).rule_id.as_deref(),
            Some(".m.rule.member_event")
        );
    }

    #[test]
    fn invites_for_me_and_tombstones_notify() {
        let invite = member_event(ME, "invite");
        let decision = defaults().evaluate(&invite, &context(2));
        assert!(decision.notify);
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.invite_for_me"));
        let other = member_event("@carol:example.org", "invite");
        assert!(!defaults().evaluate(&other, &context(2)).notify);

        let tombstone = json!({
            "type": "m.room.tombstone", "sender": BOB, "state_key": "",
            "content": {"replacement_room": "!new:example.org"},
        });
        let decision = defaults().evaluate(&tombstone, &context(250));
        assert!(decision.notify && decision.highlight);
        // Not a state event (no state_key): the rule does not match.
        let not_state = json!({"type": "m.room.tombstone", "sender": BOB, "content": {}});
        assert!(!defaults().evaluate(&not_state, &context(250)).notify);
    }

    #[test]
    fn sender_rule_matches_the_sender() {
        let rules = with_rule(
            RuleKind::Sender,
            json!({"rule_id": BOB, "enabled": true, "actions": []}),
        );
        let decision = rules.evaluate(&message(BOB, "pub"), &context(2));
        assert!(!decision.notify);
        assert_eq!(decision.rule_kind, Some(RuleKind::Sender));
        assert!(
            rules
                .evaluate(&message("@carol:example.org", "pub"), &context(2))
                .notify
        );
        // A disabled rule never matches.
        let disabled = with_rule(
            RuleKind::Sender,
            json!({"rule_id": BOB, "enabled": false, "actions": []}),
        );
        assert!(disabled.evaluate(&message(BOB, "pub"), &context(2)).notify);
    }

    // -- Conditions -----------------------------------------------------------------------------

    #[test]
    fn glob_star_question_mark_and_case_insensitivity() {
        assert!(glob_whole("lunc?*", "Lunch plans"));
        assert!(glob_whole("lunc?*", "LUNCH"));
        assert!(!glob_whole("lunc?*", " lunch"));
        assert!(!glob_whole("lunc?*", "lunc"));
        assert!(glob_whole("m.room.*", "m.room.message"));
        assert!(!glob_whole("m.room.*", "m.roomy"));
        assert!(glob_whole("*", ""));
        assert!(glob_whole("", ""));
        assert!(!glob_whole("", "a"));
        assert!(glob_whole("a*b*c", "abc"));
        assert!(glob_whole("a*b*c", "aXXbYYc"));
        assert!(!glob_whole("a*b*c", "aXXcYYb"));
        assert!(
            !glob_whole("ab*ba", "aba"),
            "first and last segments must not overlap"
        );
        assert!(glob_whole("???", "été"));
        assert!(glob_whole("ÉTÉ", "été"));
        assert!(glob_whole("**a**", "bab"));
        assert!(
            !glob_whole("*a*a*", "a"),
            "middle segments must not overlap"
        );
        assert!(glob_whole("*a*a*", "aa"));
        assert!(!glob_words("x *a*a* x", "x a x"));
        assert!(glob_words("x *a*a* x", "x aba x"));
        // Words of content.body.
        assert!(glob_words("ex*ple", "An example event."));
        assert!(glob_words("ex*ple", "exple"));
        assert!(glob_words("ex*ple", "An exciting triple-whammy"));
        assert!(!glob_words("ex*ple", "An examples event"));
        assert!(glob_words("@room", "hi@room!"));
        assert!(glob_words("bud?et", "le BUDGET"));
        assert!(!glob_words("", "le budget"));
        assert!(
            glob_words("budget", "budgeté"),
            "é is not a word char in the spec"
        );
        // event_match on another key, through a rule.
        let rules = with_rule(
            RuleKind::Override,
            json!({
                "rule_id": "topic", "enabled": true,
                "conditions": [
                    {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
                ],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        );
        let topic = |t: Value| {
            json!({
                "type": "m.room.topic", "sender": BOB, "state_key": "", "content": {"topic": t},
            })
        };
        assert!(
            rules
                .evaluate(&topic(json!("Lunch plans")), &context(250))
                .highlight
        );
        assert!(!rules.evaluate(&topic(json!(null)), &context(250)).notify);
        let star = with_rule(
            RuleKind::Override,
            json!({
                "rule_id": "star", "enabled": true,
                "conditions": [{"kind": "event_match", "key": "content.topic", "pattern": "*"}],
                "actions": ["notify"],
            }),
        );
        assert!(star.evaluate(&topic(json!("x")), &context(250)).notify);
        assert!(
            !star.evaluate(&topic(json!(7)), &context(250)).notify,
            "not a string: no match even for *"
        );
    }

    #[test]
    fn dotted_keys_follow_the_escapes() {
        let event = json!({
            "content": {
                "m.relates_to": {"rel_type": "m.thread"},
                "m": {"relates_to": {"rel_type": "other"}},
                "m\\foo": "backslash",
                "a\\xb": "other escape",
            }
        });
        let at = |key: &str| Path::parse(key).unwrap().resolve(&event).cloned();
        assert_eq!(
            at("content.m\\.relates_to.rel_type"),
            Some(json!("m.thread"))
        );
        assert_eq!(at("content.m.relates_to.rel_type"), Some(json!("other")));
        assert_eq!(at("content.m\\\\foo"), Some(json!("backslash")));
        assert_eq!(at("content.a\\xb"), Some(json!("other escape")));
        assert_eq!(at("content.m\\.relates_to.missing"), None);
        assert_eq!(at("content.m\\.relates_to.rel_type.deeper"), None);
        assert!(Path::parse(&"a.".repeat(MAX_KEY_CHARS)).is_none());
        // Through arrays: never.
        let list = json!({"content": {"list": [{"x": 1}]}});
        assert_eq!(
            Path::parse("content.list.0.x").unwrap().resolve(&list),
            None
        );
    }

    #[test]
    fn member_count_operators() {
        let cases = [
            ("2", [false, true, false]),
            ("==2", [false, true, false]),
            ("<2", [true, false, false]),
            (">2", [false, false, true]),
            ("<=2", [true, true, false]),
            (">=2", [false, true, true]),
        ];
        for (is, expected) in cases {
            let (op, count) = parse_member_count(is).unwrap();
            let condition = Condition::RoomMemberCount { op, count };
            let event = Value::Null;
            for (members, want) in [1, 2, 3].into_iter().zip(expected) {
                let got = condition.holds(&EventView::new(&event), &context(members));
                assert_eq!(got, want, "is {is:?} with {members} members");
            }
        }
        for bad in [
            "",
            "=2",
            "=<2",
            "<>2",
            "2a",
            "-1",
            "+2",
            " 2",
            "2 ",
            "<",
            "99999999999999999999999",
        ] {
            assert!(parse_member_count(bad).is_none(), "{bad:?}");
        }
        // Through a rule: an unparsable `is` never matches.
        let rules = with_rule(
            RuleKind::Override,
            json!({
                "rule_id": "few", "enabled": true,
                "conditions": [{"kind": "room_member_count", "is": "=<10"}],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        );
        assert!(!rules.evaluate(&message(BOB, "x"), &context(3)).highlight);
    }

    #[test]
    fn sender_notification_permission_uses_the_power_levels() {
        let mut event = message(BOB, "Tout le monde : alerte");
        event["content"]["m.mentions"] = json!({"room": true});
        let mut ctx = context(250);
        ctx.sender_power_level = 49;
        let decision = defaults().evaluate(&event, &ctx);
        assert!(!decision.highlight, "below the default `room` level of 50");
        ctx.sender_power_level = 50;
        let decision = defaults().evaluate(&event, &ctx);
        assert!(decision.highlight);
        assert_eq!(decision.rule_id.as_deref(), Some(".m.rule.is_room_mention"));
        ctx.notification_power_levels.insert("room".to_owned(), 100);
        assert!(!defaults().evaluate(&event, &ctx).highlight);
        ctx.sender_power_level = i64::MAX;
        assert!(defaults().evaluate(&event, &ctx).highlight);

        // Legacy `@room` in the body (no m.mentions).
        let legacy = message(BOB, "@room la réunion commence");
        let mut ctx = context(250);
        ctx.sender_power_level = 50;
        assert_eq!(
            defaults().evaluate(&legacy, &ctx).rule_id.as_deref(),
            Some(".m.rule.roomnotif")
        );

        // A key with no known level never matches.
        let condition = Condition::SenderNotificationPermission {
            key: "custom".to_owned(),
        };
        let view_of = Value::Null;
        assert!(!condition.holds(&EventView::new(&view_of), &ctx));
        ctx.notification_power_levels
            .insert("custom".to_owned(), 10);
        assert!(condition.holds(&EventView::new(&view_of), &ctx));
    }

    #[test]
    fn event_property_is_and_contains_compare_exact_scalars() {
        let event = json!({"content": {"m.federate": true, "n": 1, "f": 1.0, "s": "true", "z": null,
            "list": ["#a:example.org", 3, true, null, {"x": 1}, [1]]}});
        let is = |key: &str, value: Value| {
            let raw = json!({"kind": "event_property_is", "key": key, "value": value});
            Condition::parse(&raw).holds(&EventView::new(&event), &context(2))
        };
        assert!(is("content.m\\.federate", json!(true)));
        assert!(!is("content.m\\.federate", json!("true")));
        assert!(!is("content.m\\.federate", json!(1)));
        assert!(is("content.n", json!(1)));
        assert!(!is("content.f", json!(1)), "a float is not canonical JSON");
        assert!(!is("content.n", json!(1.0)));
        assert!(is("content.z", json!(null)));
        assert!(!is("content.missing", json!(null)));
        assert!(!is("content.n", json!(MAX_SAFE_INTEGER + 1)));
        assert!(!is("content.list", json!(["#a:example.org"])));
        let contains = |key: &str, value: Value| {
            let raw = json!({"kind": "event_property_contains", "key": key, "value": value});
            Condition::parse(&raw).holds(&EventView::new(&event), &context(2))
        };
        assert!(contains("content.list", json!("#a:example.org")));
        assert!(!contains("content.list", json!(":example.org")));
        assert!(contains("content.list", json!(3)));
        assert!(contains("content.list", json!(true)));
        assert!(contains("content.list", json!(null)));
        assert!(!contains("content.list", json!({"x": 1})));
        assert!(!contains("content.s", json!("true")), "not an array");
    }

    // -- Hostile and malformed input ------------------------------------------------------------

    #[test]
    fn content_that_is_not_an_object_is_a_typed_error() {
        let err = |content: Value| match PushRules::from_account_data(&content) {
            Err(PushRulesError::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        };
        assert_eq!(
            err(json!([])),
            MalformedPushRules::NotAnObject { found: "array" }
        );
        assert_eq!(
            err(json!("x")),
            MalformedPushRules::NotAnObject { found: "string" }
        );
        assert_eq!(err(json!({})), MalformedPushRules::MissingGlobal);
        assert_eq!(
            err(json!({"global": 1})),
            MalformedPushRules::GlobalNotAnObject { found: "number" }
        );
        assert_eq!(
            err(json!({"global": {"room": {}}})),
            MalformedPushRules::KindNotAnArray {
                kind: RuleKind::Room,
                found: "object"
            }
        );
        // Missing kinds are empty: nothing notifies.
        let empty = PushRules::from_account_data(&json!({"global": {}})).unwrap();
        assert_eq!(
            empty.evaluate(&message(BOB, "x"), &context(2)),
            PushDecision::default()
        );
    }

    #[test]
    fn malformed_rules_are_dropped_and_unknown_parts_tolerated() {
        let content = json!({"global": {"override": [
            7,
            {"enabled": true, "actions": ["notify"]},
            {"rule_id": "no-enabled", "actions": ["notify"]},
            {"rule_id": "bad-actions", "enabled": true, "actions": "notify"},
            {"rule_id": "bad-conditions", "enabled": true, "conditions": {}, "actions": ["notify"]},
            {"rule_id": "unknown-kind", "enabled": true, "actions": ["notify"],
             "conditions": [{"kind": "org.example.future", "x": 1}]},
            {"rule_id": "unusable", "enabled": true, "actions": ["notify"],
             "conditions": [{"kind": "event_match", "key": "type"}]},
            {"rule_id": "long-pattern", "enabled": true, "actions": ["notify"],
             "conditions": [{"kind": "event_match", "key": "type",
                             "pattern": "*".repeat(MAX_PATTERN_CHARS + 1)}]},
            {"rule_id": "ok", "enabled": true,
             "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
             "actions": ["org.example.unknown", {"org.example": 1},
                         {"set_tweak": "highlight", "value": "yes"},
                         {"set_tweak": "sound", "value": 3}, "notify",
                         {"set_tweak": "sound", "value": "bip"}]},
        ], "content": [{"rule_id": "no-pattern", "enabled": true, "actions": ["notify"]}]}});
        let rules = PushRules::from_account_data(&content).unwrap();
        assert_eq!(rules.ignored, 5);
        let decision = rules.evaluate(&message(BOB, "x"), &context(2));
        assert_eq!(
            decision,
            PushDecision {
                notify: true,
                highlight: false,
                sound: Some("bip".to_owned()),
                rule_kind: Some(RuleKind::Override),
                rule_id: Some("ok".to_owned()),
            }
        );
    }

    #[test]
    fn rules_over_the_cap_are_dropped() {
        let noise: Vec<Value> = (0..MAX_RULES_PER_KIND + 5)
            .map(|i| {
                json!({"rule_id": format!("r{i}"), "enabled": true, "actions": ["notify"],
                            "conditions": [
                                {"kind": "event_match", "key": "type", "pattern": "never"}]})
            })
            .collect();
        let mut underride = noise;
        underride.push(json!({"rule_id": "last", "enabled": true, "actions": ["notify"]}));
        let rules =
            PushRules::from_account_data(&json!({"global": {"underride": underride}})).unwrap();
        assert_eq!(
            rules.kinds[RuleKind::Underride as usize].len(),
            MAX_RULES_PER_KIND
        );
        assert_eq!(rules.ignored, 6);
        assert!(!rules.evaluate(&message(BOB, "x"), &context(2)).notify);

        let many_conditions: Vec<Value> = (0..=MAX_CONDITIONS_PER_RULE)
            .map(|_| json!({"kind": "room_member_count", "is": ">=0"}))
            .collect();
        let rules = PushRules::from_account_data(&json!({"global": {"override": [
            {"rule_id": "many", "enabled": true, "actions": ["notify"],
             "conditions": many_conditions}]}}))
        .unwrap();
        assert_eq!(rules.ignored, 1);
    }

    #[test]
    fn pathological_glob_finishes_fast() {
        let started = Instant::now();
        let text = "a".repeat(10_000);
        assert!(!glob_whole("*a*a*a*a*a*a*a*a*b", &text));
        assert!(!glob_words("*a*a*a*a*a*a*a*a*b", &text));
        assert!(glob_whole("*a*a*a*a*a*a*a*a*", &text));
        assert!(glob_words("a*a*a*a*a*a*a*a*a", &text));
        // The worst case of the greedy algorithm: a long segment that almost matches everywhere.
        let pattern = format!("*{}b*", "a".repeat(MAX_PATTERN_CHARS - 3));
        assert!(!glob_whole(&pattern, &text));
        assert!(!glob_words(&pattern, &text));
        // Through a content rule and the whole evaluator.
        let rules = with_rule(
            RuleKind::Content,
            json!({
                "rule_id": "evil", "enabled": true, "pattern": "*a*a*a*a*a*a*a*a*b",
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        );
        assert!(
            !rules
                .evaluate(&message(BOB, &text), &context(250))
                .highlight
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }

    /// Reference glob: the textbook dynamic programme over the pattern and the text.
    fn reference_whole(pattern: &[char], text: &[char]) -> bool {
        let mut row = vec![false; text.len() + 1];
        row[0] = true;
        for &p in pattern {
            let mut next = vec![false; text.len() + 1];
            for j in 0..=text.len() {
                next[j] = match p {
                    '*' => row[j] || (j > 0 && next[j - 1]),
                    '?' => j > 0 && row[j - 1],
                    c => j > 0 && row[j - 1] && fold(c) == text[j - 1],
                };
            }
            row = next;
        }
        row[text.len()]
    }

    /// Reference word match: any substring between boundaries that the reference matches.
    fn reference_words(pattern: &[char], text: &[char]) -> bool {
        if pattern.is_empty() {
            return text.is_empty();
        }
        (0..=text.len()).any(|s| {
            starts_word(text, s)
                && (s..=text.len())
                    .any(|e| ends_word(text, e) && reference_whole(pattern, &text[s..e]))
        })
    }

    /// Any JSON value, biased towards the words push rules and events use.
    fn arb_json() -> impl Strategy<Value = Value> {
        arb_json_sized(4, 48)
    }

    /// A small JSON value, for the parts of a generated rule.
    fn arb_part() -> impl Strategy<Value = Value> {
        arb_json_sized(2, 6)
    }

    fn arb_json_sized(depth: u32, size: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,12}".prop_map(Value::String),
            "[a*?\\\\. é@!]{0,8}".prop_map(Value::String),
            prop::sample::select(vec![
                "notify",
                "dont_notify",
                "coalesce",
                "event_match",
                "contains_display_name",
                "room_member_count",
                "sender_notification_permission",
                "event_property_is",
                "event_property_contains",
                "content.body",
                "type",
                "room_id",
                "state_key",
                "content.m\\.mentions.user_ids",
                "m.room.message",
                "highlight",
                "sound",
                "<=2",
                ">1",
                "2",
                "room",
                ME,
                BOB,
                ROOM,
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(depth, size, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "global",
                        "override",
                        "content",
                        "room",
                        "sender",
                        "underride",
                        "rule_id",
                        "enabled",
                        "actions",
                        "conditions",
                        "kind",
                        "key",
                        "pattern",
                        "value",
                        "is",
                        "set_tweak",
                        "type",
                        "sender",
                        "body",
                        "m.mentions",
                        "user_ids",
                        "state_key",
                        "msgtype",
                        "m.relates_to",
                        "rel_type",
                        "x",
                    ]),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    /// A rule of a plausible shape with arbitrary parts.
    fn arb_rule() -> impl Strategy<Value = Value> {
        let condition = prop_oneof![
            (arb_part(), arb_part()).prop_map(|(key, pattern)| {
                json!({"kind": "event_match", "key": key, "pattern": pattern})
            }),
            Just(json!({"kind": "contains_display_name"})),
            arb_part().prop_map(|is| json!({"kind": "room_member_count", "is": is})),
            arb_part()
                .prop_map(|key| { json!({"kind": "sender_notification_permission", "key": key}) }),
            (arb_part(), arb_part()).prop_map(|(key, value)| {
                json!({"kind": "event_property_is", "key": key, "value": value})
            }),
            (arb_part(), arb_part()).prop_map(|(key, value)| {
                json!({"kind": "event_property_contains", "key": key, "value": value})
            }),
            arb_part(),
        ];
        (
            arb_part(),
            prop_oneof![Just(json!(true)), Just(json!(false)), arb_part()],
            prop::collection::vec(condition, 0..4),
            prop::collection::vec(arb_part(), 0..4),
            arb_part(),
        )
            .prop_map(|(rule_id, enabled, conditions, actions, pattern)| {
                json!({"rule_id": rule_id, "enabled": enabled, "conditions": conditions,
                       "actions": actions, "pattern": pattern})
            })
    }

    fn arb_context() -> impl Strategy<Value = PushContext> {
        (
            prop::option::of("\\PC{0,8}"),
            any::<u64>(),
            any::<i64>(),
            prop::collection::btree_map("[a-z]{0,5}", any::<i64>(), 0..3),
        )
            .prop_map(|(display_name, member_count, sender_power_level, levels)| {
                PushContext {
                    display_name,
                    member_count,
                    sender_power_level,
                    notification_power_levels: levels,
                    ..PushContext::new(ME, ROOM, 0)
                }
            })
    }

    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig {
            cases: n,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn evaluate_never_panics_on_arbitrary_json(
            content in arb_json(),
            event in arb_json(),
            ctx in arb_context(),
        ) {
            if let Ok(rules) = PushRules::from_account_data(&content) {
                let _ = rules.evaluate(&event, &ctx);
            }
            let _ = defaults().evaluate(&event, &ctx);
        }
    }

    proptest! {
        #![proptest_config(cases(128))]

        #[test]
        fn evaluate_never_panics_on_plausible_rules(
            kinds in prop::collection::vec(prop::collection::vec(arb_rule(), 0..4), 5),
            event in arb_json(),
            body in "\\PC{0,24}",
            ctx in arb_context(),
        ) {
            let mut global = serde_json::Map::new();
            for (kind, rules) in RuleKind::ALL.iter().zip(kinds) {
                global.insert(kind.as_str().to_owned(), Value::Array(rules));
            }
            let rules = PushRules::from_account_data(&json!({"global": global})).unwrap();
            let decision = rules.evaluate(&event, &ctx);
            prop_assert!(decision.notify || (!decision.highlight && decision.sound.is_none()));
            let message =
                json!({"type": "m.room.message", "sender": BOB, "content": {"body": body}});
            let _ = rules.evaluate(&message, &ctx);
        }
    }

    proptest! {
        #![proptest_config(cases(1024))]

        #[test]
        fn glob_agrees_with_the_reference(
            pattern in prop_oneof!["[ab*?]{0,6}", "[ab*?A -]{0,7}"],
            text in prop_oneof!["[ab]{0,6}", "[abAé_ -]{0,10}"],
        ) {
            let glob = Glob::new(&pattern).unwrap();
            let pattern: Vec<char> = pattern.chars().collect();
            let text = fold_str(&text);
            prop_assert_eq!(glob.matches_whole(&text), reference_whole(&pattern, &text));
            prop_assert_eq!(glob.matches_words(&text), reference_words(&pattern, &text));
        }
    }
}
