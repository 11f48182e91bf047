//! What the CLI prints: readable text by default, one JSON object per result with `--json`.
//! Results go to standard output, failures to standard error.

use serde_json::{Value, json};
use tchap_secure_core::api::types::WhoAmI;
use tchap_secure_core::client::account::{AccountLock, OwnDevice};
use tchap_secure_core::client::directory::DirectoryResults;
use tchap_secure_core::client::push::Pusher;
use tchap_secure_core::client::receipts::Unread;
use tchap_secure_core::client::relations::{Deletion, Redaction};
use tchap_secure_core::client::retention::Retention;
use tchap_secure_core::client::verification::VerificationInfo;
use tchap_secure_core::display_name::{NameIssue, ParsedName};
use tchap_secure_core::store::identity::{IdentityRecord, IdentityState};
use tchap_secure_core::store::{DeviceRecord, Member, RoomSummary, SecurityEvent, TimelineEvent};
use tchap_secure_core::{
    Config, CrossSigningStatus, Notification, NotificationKind, OutgoingUpdate, SessionInfo,
    SyncSummary,
};

use crate::exit::Failure;

pub(crate) struct Output {
    json: bool,
}

fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// One line of human output on standard output, neutralised ([`neutralise`]).
macro_rules! human {
    ($($arg:tt)*) => {
        println!("{}", neutralise(&format!($($arg)*)))
    };
}

/// One line of human output on standard error, neutralised ([`neutralise`]).
macro_rules! human_err {
    ($($arg:tt)*) => {
        eprintln!("{}", neutralise(&format!($($arg)*)))
    };
}

/// Whether `c` could forge or hide what a terminal shows: control characters (C0 with
/// newline, carriage return and escape, DEL, C1), line and paragraph separators, bidirectional
/// embeddings, overrides, isolates and marks, and invisible formatting characters.
fn is_unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Human output shows peer-controlled text (message bodies, display names, room and file
/// names, journal details, a server's error message): every character that could forge a line
/// (a newline, an ANSI escape) or reorder and hide text (a bidi override, a zero-width
/// character) is shown escaped, `\u{202e}`, never interpreted. `--json` output is escaped by
/// serde.
pub(crate) fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unsafe_for_terminal) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_for_terminal(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A parsed display name for the terminal: `name [organisation]`, with `(!)` and what was
/// found when the parser flagged it (a lookalike organisation, bidi controls, …).
pub(crate) fn shown_name(name: &ParsedName) -> String {
    let shown = neutralise(&name.shown()).into_owned();
    if !name.is_suspicious() {
        return shown;
    }
    let issues: Vec<String> = name
        .issues
        .iter()
        .filter(|i| **i != NameIssue::NoOrganisation)
        .map(|i| match i {
            NameIssue::LookalikeOrganisation { of } => {
                format!("looks like {}", neutralise(of))
            }
            other => json!(other)["kind"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    format!("{shown} (!: {})", issues.join(", "))
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn failure(&self, f: &Failure) {
        if self.json {
            human_err!(
                "{}",
                json!({"error": f.reason, "exit_status": f.code, "message": f.message})
            );
        } else {
            human_err!("tchap-secure: {} ({})", f.message, f.reason);
        }
    }

    pub(crate) fn message(&self, key: &str, value: &str) {
        if self.json {
            print_json(&json!({ key: value }));
        } else {
            human!("{key}: {value}");
        }
    }

    pub(crate) fn downloaded(&self, event_id: &str, path: &std::path::Path, bytes: u64) {
        if self.json {
            print_json(&json!({
                "downloaded": event_id,
                "path": path.display().to_string(),
                "bytes": bytes,
            }));
        } else {
            human!(
                "downloaded: {bytes} bytes, scanned clean and verified, to {}",
                path.display()
            );
        }
    }

    pub(crate) fn pins(&self, pins: &[String]) {
        if self.json {
            print_json(&json!({ "spki_pins_sha256": pins }));
        } else {
            for pin in pins {
                human!("{pin}");
            }
        }
    }

    pub(crate) fn config_ok(&self, c: &Config) {
        let pins: Vec<String> = c.pins().iter().map(|p| p.to_base64()).collect();
        let expiry = c.pins_expire_at().map(|t| t.to_string());
        let scanner_keys: Vec<String> = c
            .content_scanner_keys()
            .iter()
            .map(|k| k.to_base64())
            .collect();
        let warnings = c.warnings();
        if self.json {
            let warnings: Vec<Value> = warnings
                .iter()
                .map(|w| json!({"code": w.code(), "message": w.to_string()}))
                .collect();
            print_json(&json!({
                "valid": true,
                "homeserver_url": c.homeserver_url().as_str(),
                "server_name": c.server_name(),
                "trust_anchors": c.trust_anchors().len(),
                "spki_pins_sha256": pins,
                "require_leaf_or_intermediate_pin": c.require_leaf_or_intermediate_pin(),
                "pins_expire_at": expiry,
                "content_scanner_keys": scanner_keys,
                "warnings": warnings,
            }));
        } else {
            human!("configuration valid");
            human!("  homeserver:    {}", c.homeserver_url());
            human!("  server name:   {}", c.server_name());
            human!("  trust anchors: {}", c.trust_anchors().len());
            human!("  pins:          {}", pins.join(", "));
            if c.require_leaf_or_intermediate_pin() {
                human!("                 (only leaf or intermediate pins count)");
            }
            human!("  pins expire:   {}", expiry.as_deref().unwrap_or("never"));
            human!(
                "  scanner keys:  {}",
                if scanner_keys.is_empty() {
                    "none".to_owned()
                } else {
                    scanner_keys.join(", ")
                }
            );
            for w in warnings {
                human!("warning: {w} [{}]", w.code());
            }
        }
    }

    pub(crate) fn probe_ok(&self, url: &str, versions: &[String]) {
        if self.json {
            print_json(&json!({"ok": true, "homeserver_url": url, "versions": versions}));
        } else {
            human!(
                "{url}: pinned TLS 1.3 connection verified; server speaks {}",
                versions.join(" ")
            );
        }
    }

    pub(crate) fn session(&self, s: &SessionInfo) {
        if self.json {
            print_json(&json!({"user_id": s.user_id, "device_id": s.device_id}));
        } else {
            human!("logged in as {} (device {})", s.user_id, s.device_id);
        }
    }

    pub(crate) fn whoami(&self, w: &WhoAmI) {
        if self.json {
            print_json(&json!({"user_id": w.user_id, "device_id": w.device_id}));
        } else {
            human!(
                "{} (device {})",
                w.user_id,
                w.device_id.as_deref().unwrap_or("?")
            );
        }
    }

    pub(crate) fn sync(&self, s: &SyncSummary) {
        if self.json {
            print_json(&json!(s));
        } else {
            human!(
                "synced: {} rooms, {} state events, {} malformed events skipped, {} security events",
                s.rooms,
                s.state_events,
                s.malformed_events,
                s.security_events
            );
        }
    }

    pub(crate) fn rooms(&self, rooms: &[RoomSummary]) {
        if self.json {
            print_json(&json!({ "rooms": rooms }));
            return;
        }
        if rooms.is_empty() {
            human!("no rooms");
        }
        for r in rooms {
            human!(
                "{}  {:<6}  {:<24}  {}  {} joined, {} invited",
                r.room_id,
                r.membership,
                r.name.as_deref().unwrap_or("(no name)"),
                r.encryption
                    .as_deref()
                    .map_or("NOT ENCRYPTED", |_| "encrypted"),
                r.joined_members,
                r.invited_members
            );
        }
    }

    pub(crate) fn members(
        &self,
        room: &str,
        members: &[Member],
        identities: &[Option<IdentityState>],
    ) {
        let identity = |i: &Option<IdentityState>| match i {
            Some(IdentityState::Verified) => "verified",
            Some(IdentityState::Pinned) => "pinned",
            Some(IdentityState::Changed) => "changed",
            None => "none",
        };
        if self.json {
            let members: Vec<Value> = members
                .iter()
                .zip(identities)
                .map(|(m, i)| {
                    let mut v = json!(m);
                    v["identity"] = json!(identity(i));
                    v
                })
                .collect();
            print_json(&json!({ "room_id": room, "members": members }));
            return;
        }
        for (m, i) in members.iter().zip(identities) {
            human!(
                "{:<40}  {:<6}  {:<8}  {}",
                m.user_id,
                m.membership,
                identity(i),
                shown_name(&m.name)
            );
        }
    }

    pub(crate) fn direct_room(&self, room: &str, created: bool) {
        if self.json {
            print_json(&json!({ "room_id": room, "created": created }));
        } else if created {
            human!("room_id: {room} (new direct chat)");
        } else {
            human!("room_id: {room} (existing direct chat)");
        }
    }

    pub(crate) fn directory(&self, found: &DirectoryResults) {
        if self.json {
            print_json(&json!(found));
            return;
        }
        for u in &found.users {
            human!("{:<40}  {}", u.user_id, shown_name(&u.name));
        }
        if found.limited {
            human!("(more users match: narrow the search)");
        }
    }

    pub(crate) fn lookup(&self, address: &str, user: Option<&str>) {
        if self.json {
            print_json(&json!({ "address": address, "user_id": user }));
        } else {
            match user {
                Some(user) => human!("{}: {user}", neutralise(address)),
                None => human!("{}: no user", neutralise(address)),
            }
        }
    }

    pub(crate) fn account(&self, lock: Option<AccountLock>, shred: bool) {
        if self.json {
            print_json(&json!({ "locked": lock, "shred": shred }));
            return;
        }
        match lock {
            None => human!("account: active"),
            Some(AccountLock::Expired) => human!(
                "account: EXPIRED — locked (no sync, no send, nothing shown); `account renew` e-mails the renewal link, `account resume` unlocks once renewed"
            ),
            Some(AccountLock::Revoked) => human!(
                "account: REVOKED — locked for good{}",
                if shred { "; the data is shredded" } else { "" }
            ),
        }
    }

    pub(crate) fn own_devices(&self, devices: &[OwnDevice]) {
        if self.json {
            print_json(&json!({ "devices": devices }));
            return;
        }
        for d in devices {
            human!(
                "{:<16}  {:<30}  last seen {}{}",
                d.device_id,
                neutralise(d.display_name.as_deref().unwrap_or("")),
                d.last_seen_ts
                    .map(|ts| ts.to_string())
                    .unwrap_or_else(|| "never".into()),
                if d.current { "  (this device)" } else { "" }
            );
        }
    }

    pub(crate) fn timeline_event(&self, e: &TimelineEvent) {
        if self.json {
            print_json(&json!({
                "room_id": e.room_id,
                "event_id": e.event_id,
                "sender": e.sender,
                "display_name": e.sender_display_name,
                "sender_name": e.sender_name,
                "sender_device": e.sender_device,
                "trust": e.trust,
                "state": e.state,
                "body": e.body,
                "error": e.error,
                "attachment": e.attachment,
                "local_id": e.local_id,
                "reply_to": e.reply_to,
                "edited": e.edited,
            }));
            return;
        }
        let mut marks = String::new();
        if let Some(to) = &e.reply_to {
            marks.push_str(&format!(" (reply to {to})"));
        }
        if e.edited {
            marks.push_str(" (edited)");
        }
        if let (Some(a), "decrypted") = (&e.attachment, e.state.as_str()) {
            let who = shown_name(&e.sender_name);
            human!(
                "[{}] {who} <{}> sent a file: {} ({}, {}) — tchap-secure download {} {} --out FILE",
                e.room_id,
                e.sender,
                a.name,
                a.mimetype.as_deref().unwrap_or("unknown type"),
                a.size
                    .map(|n| format!("{n} bytes"))
                    .unwrap_or_else(|| "unknown size".into()),
                e.room_id,
                e.event_id
            );
            return;
        }
        let who = shown_name(&e.sender_name);
        let trust = match e.trust.as_deref() {
            Some("tofu") => "device pinned",
            Some("own_device") => "this device",
            Some("blocked") => "BLOCKED DEVICE",
            Some(_) | None => "unknown device",
        };
        match (e.state.as_str(), e.body.as_deref()) {
            ("decrypted", Some(body)) => human!(
                "[{}] {who} <{}> ({trust}, {}){marks}: {body}    {}",
                e.room_id,
                e.sender,
                e.sender_device.as_deref().unwrap_or("?"),
                e.event_id
            ),
            ("redacted", _) => human!(
                "[{}] {who} <{}>: <message deleted>    {}",
                e.room_id,
                e.sender,
                e.event_id
            ),
            ("queued" | "sent" | "failed", body) => human!(
                "[{}] {who} <{}> ({}{}): {}    {}",
                e.room_id,
                e.sender,
                e.state,
                e.error
                    .as_deref()
                    .map(|why| format!(": {why}"))
                    .unwrap_or_default(),
                body.unwrap_or("(file)"),
                e.local_id.as_deref().unwrap_or(&e.event_id)
            ),
            (state, _) => human!(
                "[{}] {who} <{}>: <{state}: {}>    {}",
                e.room_id,
                e.sender,
                e.error.as_deref().unwrap_or("no body"),
                e.event_id
            ),
        }
    }

    /// A room's unread state.
    pub(crate) fn unread(&self, room: &str, u: &Unread) {
        if self.json {
            print_json(&json!({ "room_id": room, "unread": u }));
        } else {
            human!(
                "[{room}] unread: {} message(s), {} notifying, {} highlighted",
                u.messages,
                u.notify,
                u.highlight
            );
        }
    }

    /// A room's message lifetime.
    pub(crate) fn retention(&self, room: &str, r: &Retention) {
        if self.json {
            print_json(&json!({ "room_id": room, "retention": r }));
        } else {
            let secs = |ms: Option<i64>| {
                ms.map(|ms| format!("{} s", ms / 1000))
                    .unwrap_or_else(|| "none".into())
            };
            human!(
                "[{room}] messages disappear after: {} (room: {}, managed ceiling: {})",
                secs(r.effective_ms),
                secs(r.room_ms),
                secs(r.ceiling_ms)
            );
        }
    }

    /// An event a redaction erased.
    pub(crate) fn redaction(&self, r: &Redaction) {
        if self.json {
            print_json(&json!({ "redacted": r }));
        } else {
            human!(
                "[{}] message {} deleted by {}",
                r.room_id,
                r.event_id,
                r.redacted_by
            );
        }
    }

    /// What became of our redaction (the event is erased here in every case).
    pub(crate) fn deletion(&self, room: &str, event: &str, d: &Deletion) {
        if self.json {
            print_json(&json!({ "room_id": room, "event_id": event, "deletion": d }));
        } else {
            let outcome = match d {
                Deletion::Sent { redaction_id } => format!("deleted for everyone ({redaction_id})"),
                Deletion::Queued { local_id } => {
                    format!("deleted here; the redaction waits to be sent ({local_id})")
                }
                Deletion::Failed { reason, .. } => {
                    format!("deleted here only: the server refused the redaction ({reason})")
                }
                Deletion::NeverSent => "deleted before it was ever sent".to_owned(),
            };
            human!("[{room}] {event}: {outcome}");
        }
    }

    /// A change of state of one of our messages (sent, or failed with its reason).
    pub(crate) fn outgoing(&self, u: &OutgoingUpdate) {
        if self.json {
            print_json(&json!({ "outgoing": u }));
        } else {
            human!(
                "[{}] our message {}: {}{}",
                u.room_id,
                u.event_id.as_deref().unwrap_or(&u.local_id),
                u.state,
                u.error
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            );
        }
    }

    pub(crate) fn history_end(&self, room: &str, loaded: usize, reached_start: bool) {
        if self.json {
            print_json(&json!({
                "room_id": room,
                "history_loaded": loaded,
                "reached_start": reached_start,
            }));
        } else if reached_start {
            human!("{loaded} older message(s) loaded; this is the start of the room");
        } else {
            human!("{loaded} older message(s) loaded");
        }
    }

    pub(crate) fn devices(
        &self,
        user: &str,
        identity: Option<&IdentityRecord>,
        devices: &[DeviceRecord],
        trust: &[&str],
    ) {
        if self.json {
            let devices: Vec<Value> = devices
                .iter()
                .zip(trust)
                .map(|(d, t)| {
                    let mut v = json!(d);
                    v["trust"] = json!(t);
                    v
                })
                .collect();
            print_json(&json!({ "user_id": user, "identity": identity, "devices": devices }));
            return;
        }
        match identity {
            Some(i) => human!(
                "{user}  identity {:?}  master {}{}",
                i.state,
                i.master,
                i.changed_master
                    .as_deref()
                    .map(|m| format!("  (the server now shows {m})"))
                    .unwrap_or_default()
            ),
            None => human!("{user}  no cross-signing identity (devices pinned on first use)"),
        }
        if devices.is_empty() {
            human!("{user}: no devices");
        }
        for (d, t) in devices.iter().zip(trust) {
            human!(
                "{user}  {:<12}  ed25519 {}  {t}{}  {}",
                d.device_id,
                d.ed25519,
                if d.deleted { " (deleted)" } else { "" },
                d.display_name.as_deref().unwrap_or("")
            );
        }
    }

    pub(crate) fn verification(&self, v: &VerificationInfo) {
        if self.json {
            print_json(&json!(v));
            return;
        }
        human!(
            "verification {} with {}{}: {}",
            v.flow_id,
            v.user_id,
            v.device_id
                .as_deref()
                .map(|d| format!(" (device {d})"))
                .unwrap_or_default(),
            v.state
        );
        if let Some(emoji) = &v.emoji {
            human!(
                "  {}",
                emoji
                    .iter()
                    .map(|e| e.symbol.as_str())
                    .collect::<Vec<_>>()
                    .join("  ")
            );
            human!(
                "  {}",
                emoji
                    .iter()
                    .map(|e| e.description.as_str())
                    .collect::<Vec<_>>()
                    .join(" · ")
            );
        }
        if let Some([a, b, c]) = v.decimals {
            human!("  {a} {b} {c}");
        }
        if let Some(code) = &v.cancel_code {
            human!(
                "  cancelled by {}: {} ({code})",
                if v.cancelled_by_us == Some(true) {
                    "us"
                } else {
                    "them"
                },
                v.cancel_reason.as_deref().unwrap_or("")
            );
        }
        for k in &v.verified {
            human!("  verified: {k}");
        }
    }

    /// A question for the member (standard error, so that `--json` output stays parseable).
    pub(crate) fn prompt(&self, question: &str) {
        human_err!("{question}");
    }

    pub(crate) fn pushers(&self, on_server: &[Pusher], registered_here: &[(String, String)]) {
        if self.json {
            let here: Vec<Value> = registered_here
                .iter()
                .map(|(app_id, pushkey)| json!({ "app_id": app_id, "pushkey": pushkey }))
                .collect();
            print_json(&json!({ "pushers": on_server, "registered_here": here }));
            return;
        }
        if on_server.is_empty() {
            human!("no pusher on the homeserver");
        }
        for p in on_server {
            let here = registered_here
                .iter()
                .any(|(a, k)| *a == p.app_id && *k == p.pushkey);
            human!(
                "{}  {}  {}  {}{}",
                p.app_id,
                p.data.url.as_deref().unwrap_or("-"),
                p.data.format.as_deref().unwrap_or("-"),
                p.pushkey,
                if here { "  (this device)" } else { "" }
            );
        }
    }

    /// A notification of `listen --notify` (one per line, JSON under `notification`).
    pub(crate) fn pushed(&self, n: &Notification) {
        if self.json {
            print_json(&json!({ "notification": n }));
        } else {
            self.notification(n);
        }
    }

    pub(crate) fn notification(&self, n: &Notification) {
        if self.json {
            print_json(&json!(n));
            return;
        }
        let who = shown_name(&ParsedName {
            name: n.sender_name.clone().unwrap_or_else(|| n.sender.clone()),
            organisation: n.sender_organisation.clone(),
            issues: n.sender_name_issues.clone(),
        });
        let room = n.room_name.as_deref().unwrap_or(&n.room_id);
        let what = match n.kind {
            NotificationKind::Message => n.body.clone().unwrap_or_default(),
            NotificationKind::File => "a file".to_owned(),
            NotificationKind::Invite => "invites you".to_owned(),
            NotificationKind::Verification => "asks to verify".to_owned(),
            NotificationKind::Other => format!("<{}>", n.event_type),
        };
        human!(
            "{}[{room}] {who} <{}> ({}): {what}    {}",
            match (n.notify, n.highlight) {
                (true, true) => "(!) ",
                (true, false) => "(*) ",
                (false, _) => "(silent) ",
            },
            n.sender,
            n.trust.as_deref().unwrap_or("in clear"),
            n.event_id
        );
    }

    pub(crate) fn cross_signing(&self, s: &CrossSigningStatus) {
        if self.json {
            print_json(&json!(s));
            return;
        }
        match &s.master {
            None => human!("no cross-signing identity"),
            Some(m) => human!(
                "cross-signing identity {m} ({}): this device {} its keys, {}",
                s.identity
                    .map(|i| format!("{i:?}").to_lowercase())
                    .unwrap_or_else(|| "not pinned".into()),
                if s.has_private_keys {
                    "holds"
                } else {
                    "does not hold"
                },
                if s.device_signed {
                    "and is signed by it"
                } else {
                    "and is not signed by it yet (verify it from another device of yours)"
                }
            ),
        }
    }

    pub(crate) fn security_events(&self, events: &[SecurityEvent]) {
        if self.json {
            print_json(&json!({ "security_events": events }));
            return;
        }
        if events.is_empty() {
            human!("no security events");
        }
        for e in events {
            human!(
                "#{} {} {} {} {}",
                e.id,
                e.kind,
                e.room_id.as_deref().unwrap_or("-"),
                e.user_id.as_deref().unwrap_or("-"),
                e.detail
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_lines_escape_sequences_or_reorder_text() {
        assert_eq!(
            neutralise("Réunion à 18h — salle 2"),
            "Réunion à 18h — salle 2"
        );
        assert!(matches!(neutralise("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            neutralise("ok\n[!r:srv] Faux <@chef:srv>: ordre"),
            "ok\\u{a}[!r:srv] Faux <@chef:srv>: ordre"
        );
        assert_eq!(neutralise("\u{1b}[2J\r"), "\\u{1b}[2J\\u{d}");
        assert_eq!(neutralise("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        for c in [
            '\u{0}', '\t', '\u{7f}', '\u{85}', '\u{9b}', '\u{61c}', '\u{200b}', '\u{200e}',
            '\u{200f}', '\u{2028}', '\u{2029}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{feff}',
        ] {
            let shown = neutralise(&format!("a{c}b")).into_owned();
            assert!(!shown.contains(c), "{c:?} passed through");
            assert!(shown.starts_with('a') && shown.ends_with('b'));
        }
        // Letters, accents and ordinary punctuation of every script pass.
        assert_eq!(
            neutralise("Ministère des Armées [DGA] – عربي"),
            "Ministère des Armées [DGA] – عربي"
        );
    }
}
