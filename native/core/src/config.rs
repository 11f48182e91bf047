//! The client configuration: the same JSON document an MDM pushes to the phone (DESIGN §8) and
//! the CLI reads from a file.
//!
//! Validation is strict and happens once, here: an unknown key, an `http://` URL, fewer than two
//! SPKI pins, a malformed PEM certificate or pin is a [`ConfigError`] naming the key. A
//! [`Config`] value therefore always holds a usable, fail-closed trust policy: the transport never
//! has to second-guess it.
//!
//! ```json
//! {
//!   "homeserver_url": "https://matrix.secure.example.gouv.fr",
//!   "server_name": "secure.example.gouv.fr",
//!   "trust_anchors_pem": "-----BEGIN CERTIFICATE-----\n…",
//!   "spki_pins_sha256": ["base64-sha256-of-spki", "base64-sha256-of-backup-spki"],
//!   "pins_expire_at": "2027-06-30T00:00:00Z",
//!   "allowed_user_domain": "secure.example.gouv.fr"
//! }
//! ```
//!
//! `trust_anchors_pem` is one string holding one or more PEM certificates (the natural form of
//! an MDM string restriction); an array of such strings is accepted too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Map, Value};

use crate::media::ScannerKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vodozemac::Curve25519PublicKey;

/// Largest configuration document accepted (a handful of CA certificates fit easily).
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// Minimum number of SPKI pins: the active key and at least one backup.
pub const MIN_PINS: usize = 2;

/// Every key the validator knows. `app_restrictions.xml` on Android must list exactly these.
pub const KNOWN_KEYS: &[&str] = &[
    "homeserver_url",
    "server_name",
    "trust_anchors_pem",
    "spki_pins_sha256",
    "pins_expire_at",
    "allowed_user_domain",
    "strongbox_required",
    "unlocked_device_required",
    "wipe_command_nonce",
    "max_attachment_bytes",
    "content_scanner_keys",
    "require_leaf_or_intermediate_pin",
    "share_keys_with",
    "require_cross_signing",
    "allow_identity_acknowledgement",
    "push_gateway_url",
    "read_receipts",
    "max_message_lifetime_days",
    "redaction_reason_in_clear",
    "identity_server_url",
    "on_account_revoked",
    "known_organisations",
];

/// The path of the Push Gateway API's notify endpoint: every `push_gateway_url` is this path on
/// a host of the secure infrastructure.
pub const PUSH_NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// Which devices get our room keys (`share_keys_with`, issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySharing {
    /// Devices signed by their owner's pinned cross-signing identity (and, for users without
    /// one, devices pinned on first use unless `require_cross_signing`). The default.
    #[default]
    CrossSigned,
    /// Only devices of users we verified interactively (and our own verified devices).
    Verified,
}

impl KeySharing {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrossSigned => "cross_signed",
            Self::Verified => "verified",
        }
    }
}

/// Which read receipts we send (`read_receipts`, issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadReceipts {
    /// `m.read`: every member of the room (and the server) sees how far we read.
    Public,
    /// `m.read.private`: the server keeps it for our own devices only, which stay in step. The
    /// default: the least disclosed that still syncs the member's devices.
    #[default]
    Private,
    /// None: our other devices are not told either.
    Off,
}

impl ReadReceipts {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Off => "off",
        }
    }

    /// The Matrix receipt type to send (`m.read`, `m.read.private`), or `None` to send none.
    pub fn receipt_type(self) -> Option<&'static str> {
        match self {
            Self::Public => Some("m.read"),
            Self::Private => Some("m.read.private"),
            Self::Off => None,
        }
    }
}

/// What happens to the device's data when the homeserver says the account is gone
/// (`on_account_revoked`, issue 19): a deactivated account or a revoked access token (a
/// non-soft `M_UNKNOWN_TOKEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAccountRevoked {
    /// The data directory is crypto-shredded (its hardware key destroyed, its files removed):
    /// nothing readable is left behind. The default.
    #[default]
    Shred,
    /// The client locks: no sync, no send, no message shown; the store stays encrypted until
    /// an administrator decides (log in again, or wipe).
    Lock,
}

impl OnAccountRevoked {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shred => "shred",
            Self::Lock => "lock",
        }
    }
}

/// Most `known_organisations` accepted, and the longest name of one (characters).
pub const MAX_KNOWN_ORGANISATIONS: usize = 256;
/// The longest organisation name in `known_organisations` (characters).
pub const MAX_ORGANISATION_CHARS: usize = 128;

/// Largest `max_message_lifetime_days` accepted: ten years.
pub const MAX_MESSAGE_LIFETIME_DAYS_LIMIT: u64 = 3650;

/// Most content scanner keys pinned at once (the current one and those of coming rotations).
pub const MAX_SCANNER_KEYS: usize = 8;

/// Attachment size cap when the configuration sets none (`max_attachment_bytes`): 100 MiB.
/// The server's `m.upload.size` lowers it further at upload time.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Largest `max_attachment_bytes` accepted: what an Android `integer` managed-configuration
/// restriction can hold (`i32::MAX`, 2 GiB − 1).
pub const MAX_ATTACHMENT_BYTES_LIMIT: u64 = i32::MAX as u64;

/// A SHA-256 digest of a DER `SubjectPublicKeyInfo`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin(pub [u8; 32]);

impl SpkiPin {
    /// The pin of a DER-encoded `SubjectPublicKeyInfo` (with its outer SEQUENCE).
    pub fn of_spki_der(spki: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The base64 form used in the configuration (`spki_pins_sha256`).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl std::fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpkiPin({})", self.to_base64())
    }
}

impl std::fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    homeserver_url: reqwest::Url,
    server_name: String,
    trust_anchors: Vec<CertificateDer<'static>>,
    pins: Vec<SpkiPin>,
    pins_expire_at: Option<OffsetDateTime>,
    allowed_user_domain: Option<String>,
    strongbox_required: bool,
    unlocked_device_required: bool,
    wipe_command_nonce: Option<String>,
    max_attachment_bytes: u64,
    content_scanner_keys: Vec<Curve25519PublicKey>,
    require_leaf_or_intermediate_pin: bool,
    share_keys_with: KeySharing,
    require_cross_signing: bool,
    allow_identity_acknowledgement: bool,
    push_gateway_url: Option<reqwest::Url>,
    read_receipts: ReadReceipts,
    max_message_lifetime_days: Option<u64>,
    redaction_reason_in_clear: bool,
    identity_server_url: Option<reqwest::Url>,
    on_account_revoked: OnAccountRevoked,
    known_organisations: Vec<String>,
    /// The pins of the trust anchors' own keys (computed, for [`Config::pins_that_count`]).
    anchor_pins: Vec<SpkiPin>,
}

/// Something a valid configuration does that weakens it (`check-config` shows them).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A pin that counts is a trust anchor's own key: any certificate that CA issues for the
    /// host passes, so the pins add nothing against a mis-issuing CA (T-NET-02).
    AnchorPinned,
    /// Only one pin counts (`require_leaf_or_intermediate_pin` set, one leaf or intermediate
    /// pin): no backup pin, a key rotation would cut every phone off.
    NoBackupPin,
    /// No `content_scanner_keys`: received files cannot be opened.
    NoScannerKeys,
}

impl ConfigWarning {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::AnchorPinned => "anchor_pinned",
            Self::NoBackupPin => "no_backup_pin",
            Self::NoScannerKeys => "no_scanner_keys",
        }
    }
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AnchorPinned => {
                "a pin is a trust anchor's own key: a certificate mis-issued by that CA would be \
                 accepted; pin the server's or an intermediate's key and set \
                 require_leaf_or_intermediate_pin"
            }
            Self::NoBackupPin => {
                "only one leaf or intermediate pin counts: add a backup pin, or a key rotation \
                 cuts every phone off"
            }
            Self::NoScannerKeys => "no content_scanner_keys: received files cannot be opened",
        })
    }
}

/// Why a configuration was refused. Every variant names the offending key.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The document is not a JSON object (or is too large).
    #[error("configuration is not a valid JSON object: {detail}")]
    NotJson {
        /// What the parser said.
        detail: String,
    },
    /// A key the validator does not know (a typo would otherwise silently drop a setting).
    #[error("unknown configuration key `{key}`")]
    UnknownKey {
        /// The unknown key.
        key: String,
    },
    /// A mandatory key is absent.
    #[error("missing configuration key `{key}`")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A key has a JSON value of the wrong type.
    #[error("configuration key `{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// The value of a key is malformed.
    #[error("configuration key `{key}` is invalid: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// `homeserver_url` is not `https://`.
    #[error("configuration key `{key}` must be an https:// URL")]
    NotHttps {
        /// The key.
        key: &'static str,
    },
    /// Fewer than [`MIN_PINS`] distinct SPKI pins.
    #[error(
        "configuration key `{key}` needs at least {MIN_PINS} distinct pins (a backup pin), found {found}"
    )]
    TooFewPins {
        /// The key.
        key: &'static str,
        /// How many distinct pins were given.
        found: usize,
    },
}

impl ConfigError {
    /// The configuration key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::NotJson { .. } => None,
            Self::UnknownKey { key } => Some(key),
            Self::MissingKey { key }
            | Self::WrongType { key, .. }
            | Self::Invalid { key, .. }
            | Self::NotHttps { key }
            | Self::TooFewPins { key, .. } => Some(key),
        }
    }
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::NotJson {
                detail: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::NotJson {
            detail: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(ConfigError::NotJson {
                detail: "top level is not an object".into(),
            });
        };
        Self::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self, ConfigError> {
        if let Some(key) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey { key: key.clone() });
        }
        let homeserver_url =
            parse_https_url("homeserver_url", required_str(map, "homeserver_url")?)?;
        let server_name = parse_server_name("server_name", required_str(map, "server_name")?)?;
        let trust_anchors = parse_anchors(map)?;
        let pins = parse_pins(map)?;
        let pins_expire_at = match optional_str(map, "pins_expire_at")? {
            None => None,
            Some(s) => {
                Some(
                    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| ConfigError::Invalid {
                        key: "pins_expire_at",
                        reason: format!("not an RFC 3339 date-time: {e}"),
                    })?,
                )
            }
        };
        let allowed_user_domain = optional_str(map, "allowed_user_domain")?
            .map(|s| parse_server_name("allowed_user_domain", s))
            .transpose()?;
        let wipe_command_nonce = optional_str(map, "wipe_command_nonce")?
            .map(|n| {
                if n.is_empty() || n.len() > 128 || !n.bytes().all(|b| b.is_ascii_graphic()) {
                    Err(ConfigError::Invalid {
                        key: "wipe_command_nonce",
                        reason: "1 to 128 printable ASCII characters".into(),
                    })
                } else {
                    Ok(n.to_owned())
                }
            })
            .transpose()?;
        let max_attachment_bytes = match map.get("max_attachment_bytes") {
            None => DEFAULT_MAX_ATTACHMENT_BYTES,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (1..=MAX_ATTACHMENT_BYTES_LIMIT).contains(&v) => v,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "max_attachment_bytes",
                        reason: format!("an integer from 1 to {MAX_ATTACHMENT_BYTES_LIMIT}"),
                    });
                }
            },
            Some(_) => {
                return Err(ConfigError::WrongType {
                    key: "max_attachment_bytes",
                    expected: "an integer",
                });
            }
        };
        let content_scanner_keys = parse_scanner_keys(map)?;
        let anchor_pins = trust_anchors
            .iter()
            .map(crate::net::pinning::anchor_pin)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid {
                key: "trust_anchors_pem",
                reason: format!("not a usable X.509 certificate: {e}"),
            })?;
        let require_leaf_or_intermediate_pin =
            optional_bool(map, "require_leaf_or_intermediate_pin")?.unwrap_or(false);
        if require_leaf_or_intermediate_pin && pins.iter().all(|p| anchor_pins.contains(p)) {
            return Err(ConfigError::Invalid {
                key: "require_leaf_or_intermediate_pin",
                reason: "every pin of spki_pins_sha256 is a trust anchor's own key".into(),
            });
        }
        let push_gateway_url = optional_str(map, "push_gateway_url")?
            .map(|s| {
                parse_infrastructure_url(
                    "push_gateway_url",
                    s,
                    &homeserver_url,
                    &server_name,
                    PUSH_NOTIFY_PATH,
                )
            })
            .transpose()?;
        let identity_server_url = optional_str(map, "identity_server_url")?
            .map(|s| {
                parse_infrastructure_url(
                    "identity_server_url",
                    s,
                    &homeserver_url,
                    &server_name,
                    "/",
                )
            })
            .transpose()?;
        let on_account_revoked = match optional_str(map, "on_account_revoked")? {
            None | Some("shred") => OnAccountRevoked::Shred,
            Some("lock") => OnAccountRevoked::Lock,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "on_account_revoked",
                    reason: "\"shred\" or \"lock\"".into(),
                });
            }
        };
        let known_organisations = parse_known_organisations(map)?;
        let share_keys_with = match optional_str(map, "share_keys_with")? {
            None | Some("cross_signed") => KeySharing::CrossSigned,
            Some("verified") => KeySharing::Verified,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "share_keys_with",
                    reason: "\"cross_signed\" or \"verified\"".into(),
                });
            }
        };
        let read_receipts = match optional_str(map, "read_receipts")? {
            None | Some("private") => ReadReceipts::Private,
            Some("public") => ReadReceipts::Public,
            Some("off") => ReadReceipts::Off,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "read_receipts",
                    reason: "\"public\", \"private\" or \"off\"".into(),
                });
            }
        };
        let max_message_lifetime_days = match map.get("max_message_lifetime_days") {
            None => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (1..=MAX_MESSAGE_LIFETIME_DAYS_LIMIT).contains(&v) => Some(v),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "max_message_lifetime_days",
                        reason: format!("an integer from 1 to {MAX_MESSAGE_LIFETIME_DAYS_LIMIT}"),
                    });
                }
            },
            Some(_) => {
                return Err(ConfigError::WrongType {
                    key: "max_message_lifetime_days",
                    expected: "an integer",
                });
            }
        };
        Ok(Self {
            homeserver_url,
            server_name,
            trust_anchors,
            pins,
            pins_expire_at,
            allowed_user_domain,
            strongbox_required: optional_bool(map, "strongbox_required")?.unwrap_or(false),
            unlocked_device_required: optional_bool(map, "unlocked_device_required")?
                .unwrap_or(false),
            wipe_command_nonce,
            max_attachment_bytes,
            content_scanner_keys,
            require_leaf_or_intermediate_pin,
            share_keys_with,
            require_cross_signing: optional_bool(map, "require_cross_signing")?.unwrap_or(false),
            allow_identity_acknowledgement: optional_bool(map, "allow_identity_acknowledgement")?
                .unwrap_or(false),
            push_gateway_url,
            read_receipts,
            max_message_lifetime_days,
            redaction_reason_in_clear: optional_bool(map, "redaction_reason_in_clear")?
                .unwrap_or(false),
            identity_server_url,
            on_account_revoked,
            known_organisations,
            anchor_pins,
        })
    }

    /// The homeserver base URL (always `https://`).
    pub fn homeserver_url(&self) -> &reqwest::Url {
        &self.homeserver_url
    }

    /// The Matrix server name (the part after `:` in user ids).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The only certificates trusted as roots.
    pub fn trust_anchors(&self) -> &[CertificateDer<'static>] {
        &self.trust_anchors
    }

    /// The SPKI pins; one must match a certificate of the verified path.
    pub fn pins(&self) -> &[SpkiPin] {
        &self.pins
    }

    /// The pins a verified path may match: all of [`Config::pins`], or, with
    /// `require_leaf_or_intermediate_pin`, those that are not a trust anchor's own key (an
    /// anchor's pin would accept anything its CA issues).
    pub fn pins_that_count(&self) -> Vec<SpkiPin> {
        self.pins
            .iter()
            .filter(|p| !self.require_leaf_or_intermediate_pin || !self.anchor_pins.contains(p))
            .copied()
            .collect()
    }

    /// Whether only leaf or intermediate pins count ([`Config::pins_that_count`]).
    pub fn require_leaf_or_intermediate_pin(&self) -> bool {
        self.require_leaf_or_intermediate_pin
    }

    /// Which devices get our room keys (`share_keys_with`; default: cross-signed ones).
    pub fn share_keys_with(&self) -> KeySharing {
        self.share_keys_with
    }

    /// Whether users without any cross-signing identity get no room keys (`false`: their
    /// devices are pinned on first use, as before cross-signing).
    pub fn require_cross_signing(&self) -> bool {
        self.require_cross_signing
    }

    /// The push gateway the homeserver notifies for this device's pusher (`push_gateway_url`),
    /// if push is configured: the Push Gateway API's notify URL on the secure infrastructure.
    pub fn push_gateway_url(&self) -> Option<&reqwest::Url> {
        self.push_gateway_url.as_ref()
    }

    /// Whether a member may accept a contact's changed cross-signing identity by acknowledging
    /// it (`true`), instead of only by verifying the contact again (`false`, the default).
    pub fn allow_identity_acknowledgement(&self) -> bool {
        self.allow_identity_acknowledgement
    }

    /// Which read receipts we send (`read_receipts`; default: private ones).
    pub fn read_receipts(&self) -> ReadReceipts {
        self.read_receipts
    }

    /// The ceiling on every room's message lifetime (`max_message_lifetime_days`): a message
    /// older than this is purged from the device whatever the room's own `m.room.retention`
    /// says. `None`: no ceiling, only the room's own policy applies.
    pub fn max_message_lifetime(&self) -> Option<std::time::Duration> {
        self.max_message_lifetime_days
            .map(|days| std::time::Duration::from_secs(days * 24 * 60 * 60))
    }

    /// Whether a redaction may carry a free-text reason (`redaction_reason_in_clear`; default
    /// `false`). A redaction travels in clear, for the server must read it: its reason would be
    /// the one text the member typed that the server reads, so it is refused unless this is on.
    pub fn redaction_reason_in_clear(&self) -> bool {
        self.redaction_reason_in_clear
    }

    /// The infrastructure's identity server (`identity_server_url`), for the hashed e-mail
    /// lookup; reached over the same pinned transport as the homeserver. `None`: no lookup.
    pub fn identity_server_url(&self) -> Option<&reqwest::Url> {
        self.identity_server_url.as_ref()
    }

    /// What a deactivated account or a revoked token does to the device's data
    /// (`on_account_revoked`; default: crypto-shred).
    pub fn on_account_revoked(&self) -> OnAccountRevoked {
        self.on_account_revoked
    }

    /// The organisations of the State as the administrator lists them (`known_organisations`):
    /// a member's organisation that only looks like one of these is flagged.
    pub fn known_organisations(&self) -> &[String] {
        &self.known_organisations
    }

    /// What this valid configuration does that weakens it.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        let counting = self.pins_that_count();
        if counting.iter().any(|p| self.anchor_pins.contains(p)) {
            warnings.push(ConfigWarning::AnchorPinned);
        }
        if counting.len() < MIN_PINS {
            warnings.push(ConfigWarning::NoBackupPin);
        }
        if self.content_scanner_keys.is_empty() {
            warnings.push(ConfigWarning::NoScannerKeys);
        }
        warnings
    }

    /// After this instant every connection fails (fail closed).
    pub fn pins_expire_at(&self) -> Option<OffsetDateTime> {
        self.pins_expire_at
    }

    /// If set, only users of this server name may log in.
    pub fn allowed_user_domain(&self) -> Option<&str> {
        self.allowed_user_domain.as_deref()
    }

    /// Android: the hardware key must be in StrongBox (no fallback to the TEE).
    pub fn strongbox_required(&self) -> bool {
        self.strongbox_required
    }

    /// Android: the hardware key is usable only while the device is unlocked.
    pub fn unlocked_device_required(&self) -> bool {
        self.unlocked_device_required
    }

    /// The MDM remote-wipe command: when it differs from the value recorded at the previous
    /// start, the data directory is crypto-shredded (see `Client::open`).
    pub fn wipe_command_nonce(&self) -> Option<&str> {
        self.wipe_command_nonce.as_deref()
    }

    /// The largest attachment sent or received, in bytes (plaintext when sending, ciphertext
    /// when receiving: the same length in AES-CTR).
    pub fn max_attachment_bytes(&self) -> u64 {
        self.max_attachment_bytes
    }

    /// The content scanner's public keys (Curve25519): a key the scanner serves is used only if
    /// it is one of these. Empty when the configuration sets none: then no received file can
    /// be opened (fail closed).
    pub fn content_scanner_keys(&self) -> &[Curve25519PublicKey] {
        &self.content_scanner_keys
    }
}

fn optional_bool(map: &Map<String, Value>, key: &'static str) -> Result<Option<bool>, ConfigError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ConfigError::WrongType {
            key,
            expected: "true or false",
        }),
    }
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a str, ConfigError> {
    optional_str(map, key)?.ok_or(ConfigError::MissingKey { key })
}

fn optional_str<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, ConfigError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

fn parse_https_url(key: &'static str, s: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(s).map_err(|e| ConfigError::Invalid {
        key,
        reason: e.to_string(),
    })?;
    if url.scheme() != "https" {
        return Err(ConfigError::NotHttps { key });
    }
    let invalid = |reason: &str| ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    };
    if url.host().is_none() {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    if url.path() != "/" {
        return Err(invalid("the URL must not have a path"));
    }
    Ok(url)
}

/// `known_organisations`: an array of distinct non-empty strings, at most
/// [`MAX_KNOWN_ORGANISATIONS`] of at most [`MAX_ORGANISATION_CHARS`] characters.
fn parse_known_organisations(map: &Map<String, Value>) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "known_organisations";
    let wrong_type = ConfigError::WrongType {
        key: KEY,
        expected: "an array of strings",
    };
    let items = match map.get(KEY) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(wrong_type),
    };
    if items.len() > MAX_KNOWN_ORGANISATIONS {
        return Err(ConfigError::Invalid {
            key: KEY,
            reason: format!("at most {MAX_KNOWN_ORGANISATIONS} organisations"),
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(wrong_type);
        };
        let name = s.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_ORGANISATION_CHARS || name.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                key: KEY,
                reason: format!(
                    "organisation #{index} must have 1 to {MAX_ORGANISATION_CHARS} characters and no control character"
                ),
            });
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// A URL of a service of the secure infrastructure (`push_gateway_url`: the notify endpoint;
/// `identity_server_url`: a base URL): `https`, no credentials, query or fragment, the exact
/// `path`, on the homeserver's host or a host of the server name's domain (so the same trust
/// anchors and pins apply, and the homeserver is never told to push anywhere else).
fn parse_infrastructure_url(
    key: &'static str,
    s: &str,
    homeserver_url: &reqwest::Url,
    server_name: &str,
    path: &str,
) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(s).map_err(|e| ConfigError::Invalid {
        key,
        reason: e.to_string(),
    })?;
    if url.scheme() != "https" {
        return Err(ConfigError::NotHttps { key });
    }
    let invalid = |reason: String| ConfigError::Invalid { key, reason };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed".into()));
    }
    if url.path() != path {
        return Err(invalid(format!("the path must be {path}")));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let domain = server_name.split(':').next().unwrap_or_default();
    let ours = Some(host.as_str()) == homeserver_url.host_str()
        || host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1);
    if !ours {
        return Err(invalid(format!(
            "{host} is neither the homeserver's host nor a host of {domain}"
        )));
    }
    Ok(url)
}

/// A Matrix server name: `hostname[:port]`, checked conservatively.
fn parse_server_name(key: &'static str, s: &str) -> Result<String, ConfigError> {
    let valid = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return Err(ConfigError::Invalid {
            key,
            reason: "not a valid server name".into(),
        });
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_anchors(map: &Map<String, Value>) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    const KEY: &str = "trust_anchors_pem";
    let bundles: Vec<&str> = match map.get(KEY) {
        None => return Err(ConfigError::MissingKey { key: KEY }),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or(ConfigError::WrongType {
                key: KEY,
                expected: "a PEM string or an array of PEM strings",
            })?,
        Some(_) => {
            return Err(ConfigError::WrongType {
                key: KEY,
                expected: "a PEM string or an array of PEM strings",
            });
        }
    };
    let mut anchors = Vec::new();
    for bundle in bundles {
        let invalid = |reason: String| ConfigError::Invalid { key: KEY, reason };
        if !bundle.contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid("no PEM CERTIFICATE block".into()));
        }
        for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
            let cert = cert.map_err(|e| invalid(format!("malformed PEM: {e}")))?;
            // Parse it as webpki will: a certificate that cannot be a trust anchor is refused now,
            // not at the first connection.
            webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| invalid(format!("not a usable X.509 certificate: {e}")))?;
            anchors.push(cert);
        }
    }
    if anchors.is_empty() {
        return Err(ConfigError::Invalid {
            key: KEY,
            reason: "no certificate".into(),
        });
    }
    Ok(anchors)
}

/// `content_scanner_keys`: absent, or an array of 1 to [`MAX_SCANNER_KEYS`] distinct keys, each
/// as the scanner serves it (43 characters of unpadded standard base64, not a low-order point:
/// [`ScannerKey::from_base64`]).
fn parse_scanner_keys(map: &Map<String, Value>) -> Result<Vec<Curve25519PublicKey>, ConfigError> {
    const KEY: &str = "content_scanner_keys";
    let wrong_type = ConfigError::WrongType {
        key: KEY,
        expected: "an array of unpadded base64 Curve25519 keys",
    };
    let items = match map.get(KEY) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(wrong_type),
    };
    if items.is_empty() || items.len() > MAX_SCANNER_KEYS {
        return Err(ConfigError::Invalid {
            key: KEY,
            reason: format!("1 to {MAX_SCANNER_KEYS} keys"),
        });
    }
    let mut keys: Vec<Curve25519PublicKey> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(wrong_type);
        };
        let key = ScannerKey::from_base64(s)
            .map_err(|e| ConfigError::Invalid {
                key: KEY,
                reason: format!("key #{index}: {e}"),
            })?
            .public_key();
        if keys.contains(&key) {
            return Err(ConfigError::Invalid {
                key: KEY,
                reason: format!("key #{index} is listed twice"),
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

fn parse_pins(map: &Map<String, Value>) -> Result<Vec<SpkiPin>, ConfigError> {
    const KEY: &str = "spki_pins_sha256";
    let wrong_type = ConfigError::WrongType {
        key: KEY,
        expected: "an array of base64 SHA-256 strings",
    };
    let items = match map.get(KEY) {
        None => return Err(ConfigError::MissingKey { key: KEY }),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(wrong_type),
    };
    let mut pins: Vec<SpkiPin> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(wrong_type);
        };
        let bytes = BASE64.decode(s.trim()).map_err(|_| ConfigError::Invalid {
            key: KEY,
            reason: format!("pin #{index} is not base64"),
        })?;
        let digest: [u8; 32] = bytes.try_into().map_err(|_| ConfigError::Invalid {
            key: KEY,
            reason: format!("pin #{index} is not a 32-byte SHA-256 digest"),
        })?;
        let pin = SpkiPin(digest);
        if !pins.contains(&pin) {
            pins.push(pin);
        }
    }
    if pins.len() < MIN_PINS {
        return Err(ConfigError::TooFewPins {
            key: KEY,
            found: pins.len(),
        });
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64_NO_PAD;
    use serde_json::json;

    // A real self-signed certificate (P-256) made with openssl for these unit tests only.
    const CERT_PEM: &str = include_str!("../testdata/anchor.pem");
    // A second one (P-256, CA), made the same way.
    const SECOND_ANCHOR_PEM: &str = include_str!("../testdata/anchor2.pem");
    const PIN_A: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    const PIN_B: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    fn good() -> Value {
        json!({
            "homeserver_url": "https://localhost:8448",
            "server_name": "secure.tchap.test",
            "trust_anchors_pem": CERT_PEM,
            "spki_pins_sha256": [PIN_A, PIN_B],
        })
    }

    fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn the_push_gateway_is_the_notify_endpoint_on_the_secure_infrastructure() {
        assert!(parse(&good()).unwrap().push_gateway_url().is_none());
        for ok in [
            "https://localhost:8448/_matrix/push/v1/notify",
            "https://localhost:9999/_matrix/push/v1/notify",
            "https://push.secure.tchap.test/_matrix/push/v1/notify",
            "https://secure.tchap.test/_matrix/push/v1/notify",
            "https://PUSH.Secure.Tchap.Test/_matrix/push/v1/notify",
        ] {
            let mut c = good();
            c["push_gateway_url"] = json!(ok);
            let url = parse(&c).unwrap().push_gateway_url().cloned().unwrap();
            assert_eq!(url.path(), PUSH_NOTIFY_PATH, "{ok}");
        }
        for bad in [
            json!("http://localhost:8448/_matrix/push/v1/notify"),
            json!("https://push.example.com/_matrix/push/v1/notify"),
            json!("https://evilsecure.tchap.test/_matrix/push/v1/notify"),
            json!("https://secure.tchap.test.evil/_matrix/push/v1/notify"),
            json!("https://.secure.tchap.test/_matrix/push/v1/notify"),
            json!("https://localhost:8448/_matrix/push/v1/notify?x=1"),
            json!("https://localhost:8448/_matrix/push/v1/notify#f"),
            json!("https://u:p@localhost:8448/_matrix/push/v1/notify"),
            json!("https://localhost:8448/"),
            json!("https://localhost:8448/_matrix/push/v1/notify/"),
            json!("not a url"),
            json!(""),
            json!(42),
        ] {
            let mut c = good();
            c["push_gateway_url"] = bad.clone();
            assert_eq!(
                parse(&c).unwrap_err().key(),
                Some("push_gateway_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_identity_server_is_a_base_url_on_the_secure_infrastructure() {
        assert!(parse(&good()).unwrap().identity_server_url().is_none());
        for ok in [
            "https://localhost:8090/",
            "https://localhost:8090",
            "https://id.secure.tchap.test/",
        ] {
            let mut c = good();
            c["identity_server_url"] = json!(ok);
            assert!(parse(&c).unwrap().identity_server_url().is_some(), "{ok}");
        }
        for bad in [
            json!("http://localhost:8090/"),
            json!("https://vector.im/"),
            json!("https://evilsecure.tchap.test/"),
            json!("https://localhost:8090/_matrix/identity"),
            json!("https://u@localhost:8090/"),
            json!("https://localhost:8090/?q"),
            json!(7),
        ] {
            let mut c = good();
            c["identity_server_url"] = bad.clone();
            assert_eq!(
                parse(&c).unwrap_err().key(),
                Some("identity_server_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_revoked_account_is_shredded_unless_the_configuration_says_lock() {
        assert_eq!(
            parse(&good()).unwrap().on_account_revoked(),
            OnAccountRevoked::Shred
        );
        for (value, expected) in [
            ("shred", OnAccountRevoked::Shred),
            ("lock", OnAccountRevoked::Lock),
        ] {
            let mut c = good();
            c["on_account_revoked"] = json!(value);
            let parsed = parse(&c).unwrap().on_account_revoked();
            assert_eq!(parsed, expected);
            assert_eq!(parsed.as_str(), value);
        }
        for bad in [json!("wipe"), json!("Lock"), json!(true)] {
            let mut c = good();
            c["on_account_revoked"] = bad.clone();
            assert_eq!(
                parse(&c).unwrap_err().key(),
                Some("on_account_revoked"),
                "{bad}"
            );
        }
    }

    #[test]
    fn known_organisations_are_a_bounded_list_of_names() {
        assert!(parse(&good()).unwrap().known_organisations().is_empty());
        let mut c = good();
        c["known_organisations"] = json!([" Ministère des Armées ", "Intérieur", "Intérieur"]);
        assert_eq!(
            parse(&c).unwrap().known_organisations(),
            ["Ministère des Armées", "Intérieur"]
        );
        let too_many: Vec<String> = (0..=MAX_KNOWN_ORGANISATIONS)
            .map(|i| format!("Org {i}"))
            .collect();
        for bad in [
            json!("Armées"),
            json!([""]),
            json!(["  "]),
            json!([1]),
            json!(["a\nb"]),
            json!(["x".repeat(MAX_ORGANISATION_CHARS + 1)]),
            json!(too_many),
        ] {
            let mut c = good();
            c["known_organisations"] = bad;
            assert_eq!(parse(&c).unwrap_err().key(), Some("known_organisations"));
        }
        let mut c = good();
        c["known_organisations"] = json!(["é".repeat(MAX_ORGANISATION_CHARS)]);
        assert_eq!(parse(&c).unwrap().known_organisations().len(), 1);
    }

    #[test]
    fn accepts_a_good_config() {
        let c = parse(&good()).unwrap();
        assert_eq!(c.server_name(), "secure.tchap.test");
        assert_eq!(c.pins().len(), 2);
        assert_eq!(c.trust_anchors().len(), 1);
        assert!(c.pins_expire_at().is_none());
    }

    #[test]
    fn accepts_an_array_of_anchors_and_an_expiry() {
        let mut v = good();
        v["trust_anchors_pem"] = json!([CERT_PEM, CERT_PEM]);
        v["pins_expire_at"] = json!("2030-01-01T00:00:00Z");
        let c = parse(&v).unwrap();
        assert_eq!(c.trust_anchors().len(), 2);
        assert_eq!(c.pins_expire_at().unwrap().year(), 2030);
    }

    #[test]
    fn attachment_cap_defaults_and_is_bounded() {
        assert_eq!(
            parse(&good()).unwrap().max_attachment_bytes(),
            DEFAULT_MAX_ATTACHMENT_BYTES
        );
        for ok in [1, 10_485_760, MAX_ATTACHMENT_BYTES_LIMIT] {
            let mut v = good();
            v["max_attachment_bytes"] = json!(ok);
            assert_eq!(parse(&v).unwrap().max_attachment_bytes(), ok);
        }
        for bad in [
            json!(0),
            json!(-1),
            json!(MAX_ATTACHMENT_BYTES_LIMIT + 1),
            json!(1.5),
        ] {
            let mut v = good();
            v["max_attachment_bytes"] = bad.clone();
            assert_eq!(
                parse(&v).unwrap_err(),
                ConfigError::Invalid {
                    key: "max_attachment_bytes",
                    reason: format!("an integer from 1 to {MAX_ATTACHMENT_BYTES_LIMIT}"),
                },
                "{bad}"
            );
        }
        let mut v = good();
        v["max_attachment_bytes"] = json!("100MB");
        assert_eq!(
            parse(&v).unwrap_err(),
            ConfigError::WrongType {
                key: "max_attachment_bytes",
                expected: "an integer"
            }
        );
    }

    #[test]
    fn anchor_pins_are_flagged_and_can_be_required_not_to_count() {
        let anchor = CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap();
        let anchor_pin = crate::net::pinning::anchor_pin(&anchor).unwrap();
        // What `openssl … | sha256 | base64` gives for the anchor's key (testdata/anchor.pin).
        assert_eq!(
            anchor_pin.to_base64(),
            include_str!("../testdata/anchor.pin").trim()
        );
        let pin_a = SpkiPin(BASE64.decode(PIN_A).unwrap().try_into().unwrap());
        let pin_b = SpkiPin(BASE64.decode(PIN_B).unwrap().try_into().unwrap());

        let plain = parse(&good()).unwrap();
        assert_eq!(plain.warnings(), [ConfigWarning::NoScannerKeys]);
        assert_eq!(plain.pins_that_count(), [pin_a, pin_b]);

        // The anchor's own key pinned: valid, but flagged, and it counts.
        let mut c = good();
        c["spki_pins_sha256"] = json!([anchor_pin.to_base64(), PIN_A]);
        let flagged = parse(&c).unwrap();
        assert_eq!(
            flagged.warnings(),
            [ConfigWarning::AnchorPinned, ConfigWarning::NoScannerKeys]
        );
        assert_eq!(flagged.pins_that_count(), [anchor_pin, pin_a]);

        // Required: the anchor's pin no longer counts; one pin left has no backup.
        c["require_leaf_or_intermediate_pin"] = json!(true);
        let required = parse(&c).unwrap();
        assert!(required.require_leaf_or_intermediate_pin());
        assert_eq!(required.pins_that_count(), [pin_a]);
        assert_eq!(
            required.warnings(),
            [ConfigWarning::NoBackupPin, ConfigWarning::NoScannerKeys]
        );
        c["spki_pins_sha256"] = json!([anchor_pin.to_base64(), PIN_A, PIN_B]);
        assert_eq!(parse(&c).unwrap().pins_that_count(), [pin_a, pin_b]);

        // Required with only anchors' keys: refused.
        let mut other = good();
        let second = CertificateDer::from_pem_slice(SECOND_ANCHOR_PEM.as_bytes()).unwrap();
        let second_pin = crate::net::pinning::anchor_pin(&second).unwrap();
        other["trust_anchors_pem"] = json!([CERT_PEM, SECOND_ANCHOR_PEM]);
        other["spki_pins_sha256"] = json!([anchor_pin.to_base64(), second_pin.to_base64()]);
        assert_eq!(
            parse(&other).unwrap().warnings()[0],
            ConfigWarning::AnchorPinned
        );
        other["require_leaf_or_intermediate_pin"] = json!(true);
        let e = parse(&other).unwrap_err();
        assert_eq!(e.key(), Some("require_leaf_or_intermediate_pin"));
        other["require_leaf_or_intermediate_pin"] = json!("yes");
        assert!(matches!(
            parse(&other).unwrap_err(),
            ConfigError::WrongType { .. }
        ));
    }

    #[test]
    fn the_key_sharing_rule_is_strict_and_defaults_to_cross_signed() {
        let default = parse(&good()).unwrap();
        assert_eq!(default.share_keys_with(), KeySharing::CrossSigned);
        assert!(!default.require_cross_signing());
        assert!(!default.allow_identity_acknowledgement());
        let mut c = good();
        c["share_keys_with"] = json!("verified");
        c["require_cross_signing"] = json!(true);
        let strict = parse(&c).unwrap();
        assert_eq!(strict.share_keys_with(), KeySharing::Verified);
        assert!(strict.require_cross_signing());
        c["share_keys_with"] = json!("cross_signed");
        assert_eq!(
            parse(&c).unwrap().share_keys_with(),
            KeySharing::CrossSigned
        );
        for bad in [json!("all"), json!("Verified"), json!(""), json!(true)] {
            let mut c = good();
            c["share_keys_with"] = bad.clone();
            assert_eq!(
                parse(&c).unwrap_err().key(),
                Some("share_keys_with"),
                "{bad}"
            );
        }
        let mut c = good();
        c["require_cross_signing"] = json!("yes");
        assert_eq!(parse(&c).unwrap_err().key(), Some("require_cross_signing"));
        let mut c = good();
        c["allow_identity_acknowledgement"] = json!(true);
        assert!(parse(&c).unwrap().allow_identity_acknowledgement());
        c["allow_identity_acknowledgement"] = json!("true");
        assert_eq!(
            parse(&c).unwrap_err().key(),
            Some("allow_identity_acknowledgement")
        );
    }

    #[test]
    fn read_receipts_are_strict_and_default_to_private() {
        let default = parse(&good()).unwrap().read_receipts();
        assert_eq!(default, ReadReceipts::Private);
        assert_eq!(default.receipt_type(), Some("m.read.private"));
        for (value, expected, receipt_type) in [
            ("public", ReadReceipts::Public, Some("m.read")),
            ("private", ReadReceipts::Private, Some("m.read.private")),
            ("off", ReadReceipts::Off, None),
        ] {
            let mut c = good();
            c["read_receipts"] = json!(value);
            let parsed = parse(&c).unwrap().read_receipts();
            assert_eq!(parsed, expected, "{value}");
            assert_eq!(parsed.as_str(), value);
            assert_eq!(parsed.receipt_type(), receipt_type);
        }
        for bad in ["Public", "m.read", "none", "on", ""] {
            let mut c = good();
            c["read_receipts"] = json!(bad);
            assert_eq!(
                parse(&c).unwrap_err(),
                ConfigError::Invalid {
                    key: "read_receipts",
                    reason: "\"public\", \"private\" or \"off\"".into(),
                },
                "{bad}"
            );
        }
        for wrong in [json!(true), json!(1), json!(["private"]), json!(null)] {
            let mut c = good();
            c["read_receipts"] = wrong.clone();
            assert_eq!(
                parse(&c).unwrap_err(),
                ConfigError::WrongType {
                    key: "read_receipts",
                    expected: "a string"
                },
                "{wrong}"
            );
        }
    }

    #[test]
    fn the_message_lifetime_ceiling_is_optional_and_bounded() {
        assert_eq!(parse(&good()).unwrap().max_message_lifetime(), None);
        for (days, secs) in [
            (1, 86_400),
            (30, 30 * 86_400),
            (MAX_MESSAGE_LIFETIME_DAYS_LIMIT, 3650 * 86_400),
        ] {
            let mut c = good();
            c["max_message_lifetime_days"] = json!(days);
            assert_eq!(
                parse(&c).unwrap().max_message_lifetime(),
                Some(std::time::Duration::from_secs(secs)),
                "{days}"
            );
        }
        for bad in [
            json!(0),
            json!(-1),
            json!(MAX_MESSAGE_LIFETIME_DAYS_LIMIT + 1),
            json!(1.5),
            json!(u64::MAX),
        ] {
            let mut c = good();
            c["max_message_lifetime_days"] = bad.clone();
            assert_eq!(
                parse(&c).unwrap_err(),
                ConfigError::Invalid {
                    key: "max_message_lifetime_days",
                    reason: "an integer from 1 to 3650".into(),
                },
                "{bad}"
            );
        }
        for wrong in [json!("30"), json!(true), json!(null), json!([30])] {
            let mut c = good();
            c["max_message_lifetime_days"] = wrong.clone();
            assert_eq!(
                parse(&c).unwrap_err(),
                ConfigError::WrongType {
                    key: "max_message_lifetime_days",
                    expected: "an integer"
                },
                "{wrong}"
            );
        }
    }

    #[test]
    fn redaction_reasons_are_refused_unless_allowed() {
        assert!(!parse(&good()).unwrap().redaction_reason_in_clear());
        for allowed in [true, false] {
            let mut c = good();
            c["redaction_reason_in_clear"] = json!(allowed);
            assert_eq!(parse(&c).unwrap().redaction_reason_in_clear(), allowed);
        }
        for wrong in [json!("true"), json!(1), json!(null)] {
            let mut c = good();
            c["redaction_reason_in_clear"] = wrong.clone();
            assert_eq!(
                parse(&c).unwrap_err(),
                ConfigError::WrongType {
                    key: "redaction_reason_in_clear",
                    expected: "true or false"
                },
                "{wrong}"
            );
        }
    }

    #[test]
    fn scanner_keys_are_a_strict_list() {
        const KEY_A: &str = "CsCPs3UtgStY+/bGlOOlhol22fUxVa6lNnTHfoEspD8";
        let key_b = vodozemac::pk_encryption::PkDecryption::new()
            .public_key()
            .to_base64();
        assert!(parse(&good()).unwrap().content_scanner_keys().is_empty());
        let mut c = good();
        c["content_scanner_keys"] = json!([KEY_A, key_b]);
        let keys = parse(&c).unwrap().content_scanner_keys().to_vec();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].to_base64(), KEY_A);
        assert_eq!(keys[1].to_base64(), key_b);

        let nine: Vec<String> = (0..9)
            .map(|_| {
                vodozemac::pk_encryption::PkDecryption::new()
                    .public_key()
                    .to_base64()
            })
            .collect();
        // Exactly the most: accepted.
        let mut c = good();
        c["content_scanner_keys"] = json!(nine[..MAX_SCANNER_KEYS]);
        assert_eq!(
            parse(&c).unwrap().content_scanner_keys().len(),
            MAX_SCANNER_KEYS
        );
        let low_order = BASE64_NO_PAD.encode([0u8; 32]);
        for bad in [
            json!([]),
            json!(nine),
            json!([KEY_A, KEY_A]),
            json!([format!("{KEY_A}=")]),
            json!([&KEY_A[..42]]),
            json!([KEY_A.replace('+', "-")]),
            json!([low_order]),
            json!([""]),
        ] {
            let mut c = good();
            c["content_scanner_keys"] = bad.clone();
            let e = parse(&c).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{bad}: {e:?}");
            assert_eq!(e.key(), Some("content_scanner_keys"));
        }
        for wrong in [json!(KEY_A), json!([1]), json!({ "k": KEY_A })] {
            let mut c = good();
            c["content_scanner_keys"] = wrong;
            assert!(matches!(
                parse(&c).unwrap_err(),
                ConfigError::WrongType {
                    key: "content_scanner_keys",
                    ..
                }
            ));
        }
    }

    #[test]
    fn android_keys_are_typed() {
        let mut v = good();
        v["strongbox_required"] = json!(true);
        v["unlocked_device_required"] = json!(false);
        v["wipe_command_nonce"] = json!("2026-11-28-001");
        let c = parse(&v).unwrap();
        assert!(c.strongbox_required() && !c.unlocked_device_required());
        assert_eq!(c.wipe_command_nonce(), Some("2026-11-28-001"));
        v["strongbox_required"] = json!("yes");
        assert_eq!(parse(&v).unwrap_err().key(), Some("strongbox_required"));
        v["strongbox_required"] = json!(true);
        v["wipe_command_nonce"] = json!("");
        assert_eq!(parse(&v).unwrap_err().key(), Some("wipe_command_nonce"));
    }

    #[test]
    fn refuses_unknown_keys() {
        let mut v = good();
        v["homeserver_ulr"] = json!("https://x");
        assert_eq!(
            parse(&v).unwrap_err(),
            ConfigError::UnknownKey {
                key: "homeserver_ulr".into()
            }
        );
    }

    #[test]
    fn refuses_http_and_odd_urls() {
        let mut v = good();
        v["homeserver_url"] = json!("http://localhost:8008");
        assert_eq!(
            parse(&v).unwrap_err(),
            ConfigError::NotHttps {
                key: "homeserver_url"
            }
        );
        for bad in [
            "https://u:p@host",
            "https://host/path",
            "https://host?q=1",
            "not a url",
        ] {
            v["homeserver_url"] = json!(bad);
            assert_eq!(
                parse(&v).unwrap_err().key(),
                Some("homeserver_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_fewer_than_two_distinct_pins() {
        let mut v = good();
        v["spki_pins_sha256"] = json!([PIN_A]);
        assert_eq!(
            parse(&v).unwrap_err(),
            ConfigError::TooFewPins {
                key: "spki_pins_sha256",
                found: 1
            }
        );
        v["spki_pins_sha256"] = json!([PIN_A, PIN_A]);
        assert!(matches!(
            parse(&v).unwrap_err(),
            ConfigError::TooFewPins { found: 1, .. }
        ));
    }

    #[test]
    fn refuses_malformed_pins() {
        let mut v = good();
        v["spki_pins_sha256"] = json!([PIN_A, "not base64!"]);
        assert_eq!(parse(&v).unwrap_err().key(), Some("spki_pins_sha256"));
        v["spki_pins_sha256"] = json!([PIN_A, "AAAA"]);
        assert_eq!(parse(&v).unwrap_err().key(), Some("spki_pins_sha256"));
        v["spki_pins_sha256"] = json!(PIN_A);
        assert!(matches!(
            parse(&v).unwrap_err(),
            ConfigError::WrongType { .. }
        ));
    }

    #[test]
    fn refuses_malformed_pem() {
        let mut v = good();
        for bad in [
            "garbage".to_owned(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            CERT_PEM.replace("-----END CERTIFICATE-----", ""),
        ] {
            v["trust_anchors_pem"] = json!(bad);
            assert_eq!(
                parse(&v).unwrap_err().key(),
                Some("trust_anchors_pem"),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_missing_keys_wrong_types_and_bad_dates() {
        for key in [
            "homeserver_url",
            "server_name",
            "trust_anchors_pem",
            "spki_pins_sha256",
        ] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(key);
            assert_eq!(parse(&v).unwrap_err().key(), Some(key));
        }
        let mut v = good();
        v["server_name"] = json!(42);
        assert!(matches!(
            parse(&v).unwrap_err(),
            ConfigError::WrongType {
                key: "server_name",
                ..
            }
        ));
        v = good();
        v["pins_expire_at"] = json!("tomorrow");
        assert_eq!(parse(&v).unwrap_err().key(), Some("pins_expire_at"));
        assert!(matches!(
            Config::from_json(b"[1]"),
            Err(ConfigError::NotJson { .. })
        ));
        assert!(matches!(
            Config::from_json(b"{"),
            Err(ConfigError::NotJson { .. })
        ));
    }
}
