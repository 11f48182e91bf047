//! What the CLI prints: readable text by default, one JSON object per result with `--json`.
//! Results go to standard output, failures to standard error.

use serde_json::json;
use tchap_secure_core::api::types::WhoAmI;
use tchap_secure_core::store::{DeviceRecord, Member, RoomSummary, SecurityEvent, TimelineEvent};
use tchap_secure_core::{Config, OutgoingUpdate, SessionInfo, SyncSummary};

use crate::exit::Failure;

pub(crate) struct Output {
    json: bool,
}

fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn failure(&self, f: &Failure) {
        if self.json {
            eprintln!(
                "{}",
                json!({"error": f.reason, "exit_status": f.code, "message": f.message})
            );
        } else {
            eprintln!("tchap-secure: {} ({})", f.message, f.reason);
        }
    }

    pub(crate) fn message(&self, key: &str, value: &str) {
        if self.json {
            print_json(&json!({ key: value }));
        } else {
            println!("{key}: {value}");
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
            println!(
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
                println!("{pin}");
            }
        }
    }

    pub(crate) fn config_ok(&self, c: &Config) {
        let pins: Vec<String> = c.pins().iter().map(|p| p.to_base64()).collect();
        let expiry = c.pins_expire_at().map(|t| t.to_string());
        if self.json {
            print_json(&json!({
                "valid": true,
                "homeserver_url": c.homeserver_url().as_str(),
                "server_name": c.server_name(),
                "trust_anchors": c.trust_anchors().len(),
                "spki_pins_sha256": pins,
                "pins_expire_at": expiry,
            }));
        } else {
            println!("configuration valid");
            println!("  homeserver:    {}", c.homeserver_url());
            println!("  server name:   {}", c.server_name());
            println!("  trust anchors: {}", c.trust_anchors().len());
            println!("  pins:          {}", pins.join(", "));
            println!("  pins expire:   {}", expiry.as_deref().unwrap_or("never"));
        }
    }

    pub(crate) fn probe_ok(&self, url: &str, versions: &[String]) {
        if self.json {
            print_json(&json!({"ok": true, "homeserver_url": url, "versions": versions}));
        } else {
            println!(
                "{url}: pinned TLS 1.3 connection verified; server speaks {}",
                versions.join(" ")
            );
        }
    }

    pub(crate) fn session(&self, s: &SessionInfo) {
        if self.json {
            print_json(&json!({"user_id": s.user_id, "device_id": s.device_id}));
        } else {
            println!("logged in as {} (device {})", s.user_id, s.device_id);
        }
    }

    pub(crate) fn whoami(&self, w: &WhoAmI) {
        if self.json {
            print_json(&json!({"user_id": w.user_id, "device_id": w.device_id}));
        } else {
            println!(
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
            println!(
                "synced: {} rooms, {} state events, {} malformed events skipped, {} security events",
                s.rooms, s.state_events, s.malformed_events, s.security_events
            );
        }
    }

    pub(crate) fn rooms(&self, rooms: &[RoomSummary]) {
        if self.json {
            print_json(&json!({ "rooms": rooms }));
            return;
        }
        if rooms.is_empty() {
            println!("no rooms");
        }
        for r in rooms {
            println!(
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

    pub(crate) fn members(&self, room: &str, members: &[Member]) {
        if self.json {
            print_json(&json!({ "room_id": room, "members": members }));
            return;
        }
        for m in members {
            println!(
                "{:<40}  {:<6}  {}",
                m.user_id,
                m.membership,
                m.display_name.as_deref().unwrap_or("")
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
                "sender_device": e.sender_device,
                "trust": e.trust,
                "state": e.state,
                "body": e.body,
                "error": e.error,
                "attachment": e.attachment,
                "local_id": e.local_id,
            }));
            return;
        }
        if let (Some(a), "decrypted") = (&e.attachment, e.state.as_str()) {
            let who = e.sender_display_name.as_deref().unwrap_or(&e.sender);
            println!(
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
        let who = e.sender_display_name.as_deref().unwrap_or(&e.sender);
        let trust = match e.trust.as_deref() {
            Some("tofu") => "device pinned",
            Some("own_device") => "this device",
            Some("blocked") => "BLOCKED DEVICE",
            Some(_) | None => "unknown device",
        };
        match (e.state.as_str(), e.body.as_deref()) {
            ("decrypted", Some(body)) => println!(
                "[{}] {who} <{}> ({trust}, {}): {body}    {}",
                e.room_id,
                e.sender,
                e.sender_device.as_deref().unwrap_or("?"),
                e.event_id
            ),
            ("queued" | "sent" | "failed", body) => println!(
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
            (state, _) => println!(
                "[{}] {who} <{}>: <{state}: {}>    {}",
                e.room_id,
                e.sender,
                e.error.as_deref().unwrap_or("no body"),
                e.event_id
            ),
        }
    }

    /// A change of state of one of our messages (sent, or failed with its reason).
    pub(crate) fn outgoing(&self, u: &OutgoingUpdate) {
        if self.json {
            print_json(&json!({ "outgoing": u }));
        } else {
            println!(
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
            println!("{loaded} older message(s) loaded; this is the start of the room");
        } else {
            println!("{loaded} older message(s) loaded");
        }
    }

    pub(crate) fn devices(&self, user: &str, devices: &[DeviceRecord]) {
        if self.json {
            print_json(&json!({ "user_id": user, "devices": devices }));
            return;
        }
        if devices.is_empty() {
            println!("{user}: no devices");
        }
        for d in devices {
            println!(
                "{user}  {:<12}  ed25519 {}  {:?}{}  {}",
                d.device_id,
                d.ed25519,
                d.state,
                if d.deleted { " (deleted)" } else { "" },
                d.display_name.as_deref().unwrap_or("")
            );
        }
    }

    pub(crate) fn security_events(&self, events: &[SecurityEvent]) {
        if self.json {
            print_json(&json!({ "security_events": events }));
            return;
        }
        if events.is_empty() {
            println!("no security events");
        }
        for e in events {
            println!(
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
