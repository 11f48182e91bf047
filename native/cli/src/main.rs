//! `tchap-secure`: the command-line tool of MDM administrators and auditors.
//!
//! It drives the same core as the phone: the same configuration JSON, the same pinned
//! transport, the same vault (on a PKCS#11 token here) and the same SQLCipher store.
//!
//! Secrets never come from the command line (visible in `ps` and shell history): the token PIN
//! and the password are read from an environment variable or from standard input, into
//! zeroizing buffers.
//!
//! Exit status: 0 success; 1 other failure; 2 configuration or usage error; 3 the TLS peer was
//! rejected; 4 any other network failure (refused, timeout, HTTP error, malformed answer);
//! 5 the homeserver refused the request (Matrix error); 6 vault or token failure; 7 local
//! database failure; 8 refused by the end-to-end encryption policy; 9 a received file refused
//! by the content scanner (antivirus).

#![forbid(unsafe_code)]

mod exit;
mod output;
mod secrets;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tchap_secure_core::client::media::OutgoingFile;
use tchap_secure_core::net::{Limits, Transport, spki_pin_of_certificate};
use tchap_secure_core::{Client, Config};
use tchap_secure_hsm::{DEFAULT_SOFTHSM_MODULE, Pkcs11Config, Pkcs11Vault};

use exit::Failure;
use output::Output;

/// Tchap Secure command-line tool.
#[derive(Debug, Parser)]
#[command(name = "tchap-secure", version, about, after_help = exit::HELP)]
struct Cli {
    /// Configuration file (the MDM JSON).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (vault.bin and the encrypted database).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PKCS#11 module holding the key-encryption key.
    #[arg(long, global = true, default_value = DEFAULT_SOFTHSM_MODULE)]
    pkcs11_module: PathBuf,
    /// Label of the PKCS#11 token.
    #[arg(long, global = true, default_value = "tchap-secure")]
    token_label: String,
    /// Read the token PIN from the first line of standard input (else $TCHAP_SECURE_TOKEN_PIN).
    #[arg(long, global = true)]
    pin_stdin: bool,
    /// Total time allowed for one request, in seconds (connect and read timeouts are capped by it).
    #[arg(long, global = true, default_value_t = 60)]
    timeout_secs: u64,
    /// Machine-readable output: one JSON object per result.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum AccountAction {
    /// Whether the account is locked, and why (the default).
    Status,
    /// Ask the homeserver to e-mail the renewal link of an expired account.
    Renew,
    /// Ask whether the expired account was renewed; unlock if so.
    Resume,
}

#[derive(Debug, Subcommand)]
enum NotificationsAction {
    /// Register (or update) this device's pusher: the homeserver will notify the push gateway
    /// of each event its push rules say notifies, with the event and room ids only.
    Register {
        /// The app's id (e.g. fr.gouv.tchap.secure.android).
        #[arg(long)]
        app_id: String,
        /// This device's address at the push distributor (e.g. a UnifiedPush endpoint).
        #[arg(long)]
        pushkey: String,
        /// The name shown in the account's list of pushers.
        #[arg(long, default_value = "tchap-secure")]
        device_name: String,
    },
    /// Remove every pusher this device registered.
    Unregister,
    /// The pushers the homeserver holds for the account, and those this device registered.
    List,
}

#[derive(Debug, Subcommand)]
enum CrossSigningAction {
    /// Print where our identity stands (no network).
    Status,
    /// Create and publish our identity if the account has none, or finish an interrupted
    /// setup. A password ($TCHAP_SECURE_PASSWORD, or stdin with --password-stdin) is sent
    /// only if the server asks for it.
    Bootstrap {
        /// Read the password from standard input (after the PIN, if --pin-stdin).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace our identity with a new one: every device and user verified before must be
    /// verified again. Takes the account password ($TCHAP_SECURE_PASSWORD or --password-stdin).
    Reset {
        /// Read the password from standard input (after the PIN, if --pin-stdin).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect over the pinned transport and fetch /_matrix/client/versions.
    Probe,
    /// Print the SPKI pin (base64 SHA-256) of each certificate of a PEM file.
    Pin {
        /// PEM file with one or more certificates.
        cert: PathBuf,
    },
    /// Validate a configuration file.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Log in with a password ($TCHAP_SECURE_PASSWORD, or stdin with --password-stdin).
    Login {
        /// Localpart or full user id.
        #[arg(long, required_unless_present = "email", conflicts_with = "email")]
        user: Option<String>,
        /// The work e-mail address bound to the account (instead of --user).
        #[arg(long)]
        email: Option<String>,
        /// Device display name.
        #[arg(long, default_value = "Tchap Secure CLI")]
        device_name: String,
        /// Read the password from standard input (after the PIN, if --pin-stdin).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Ask the server who we are.
    Whoami,
    /// Sync once (or forever with --loop) and store what changed.
    Sync {
        /// Long-poll timeout in milliseconds.
        #[arg(long, default_value_t = 0)]
        timeout_ms: u64,
        /// Keep syncing until interrupted.
        #[arg(long = "loop")]
        forever: bool,
    },
    /// Sync, then list rooms.
    Rooms,
    /// Sync, then list a room's members with their display names and the trust in their
    /// cross-signing identity (verified, pinned, changed, or none: devices pinned on first use).
    Members {
        /// Room id.
        room: String,
    },
    /// Create an encrypted room.
    CreateRoom {
        /// Room name.
        #[arg(long)]
        name: Option<String>,
        /// User to invite (repeatable).
        #[arg(long)]
        invite: Vec<String>,
        /// Mark as a direct chat.
        #[arg(long)]
        direct: bool,
    },
    /// Invite a user to a room.
    Invite {
        /// Room id.
        room: String,
        /// User id.
        #[arg(required_unless_present = "email", conflicts_with = "email")]
        user: Option<String>,
        /// Invite the user this work e-mail address belongs to (resolved by the identity
        /// server's hashed lookup; an unknown address sends nothing).
        #[arg(long)]
        email: Option<String>,
    },
    /// Search the user directory by a name or e-mail fragment; each name is shown parsed
    /// (name, organisation) and checked (lookalike organisations flagged).
    Directory {
        /// What to look for.
        term: String,
        /// At most this many users (1 to 50).
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// The user a work e-mail address belongs to, by the identity server's hashed lookup (the
    /// address never leaves the device, only its peppered hash).
    Lookup {
        /// The e-mail address.
        email: String,
    },
    /// The account's state on this device: locked (expired, revoked) or not; ask for the
    /// renewal e-mail; check whether it was renewed and unlock.
    Account {
        #[command(subcommand)]
        action: Option<AccountAction>,
    },
    /// This account's devices (sessions), or log some of them out (with the password, read
    /// like at login).
    OwnDevices {
        /// Log this device out (repeatable); never this one (use logout).
        #[arg(long)]
        log_out: Vec<String>,
        /// Read the password from standard input (after the PIN, if --pin-stdin).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Join a room.
    Join {
        /// Room id.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// Room id.
        room: String,
    },
    /// Send an encrypted text message (body from --text or standard input).
    Send {
        /// Room id.
        room: String,
        /// The message (else read from standard input).
        #[arg(long)]
        text: Option<String>,
        /// A user this message mentions (`m.mentions`: notified by id); repeatable.
        #[arg(long = "mention")]
        mentions: Vec<String>,
    },
    /// Reply to a message (the relation and the mention of its sender travel encrypted).
    Reply {
        /// Room id.
        room: String,
        /// The message answered.
        event: String,
        /// The reply (else read from standard input).
        #[arg(long)]
        text: Option<String>,
    },
    /// Replace the text of one's own message for everyone; the former text is erased here.
    Edit {
        /// Room id.
        room: String,
        /// One's own message.
        event: String,
        /// The new text (else read from standard input).
        #[arg(long)]
        text: Option<String>,
    },
    /// Mark a room read up to an event (default: its latest), with the receipt the managed
    /// configuration allows (`read_receipts`: private by default); prints the unread state.
    Read {
        /// Room id.
        room: String,
        /// The event read up to.
        event: Option<String>,
    },
    /// The unread state of a room, computed on the device (messages, notifying, highlighted).
    Unread {
        /// Room id.
        room: String,
    },
    /// A room's message lifetime (disappearing messages): show it, or set it for every member
    /// (power level permitting; at least 30 s). The managed configuration's ceiling
    /// (`max_message_lifetime_days`) applies whatever the room says.
    Retention {
        /// Room id.
        room: String,
        /// Set the lifetime, in seconds.
        #[arg(long)]
        set_seconds: Option<u64>,
        /// Remove the room's lifetime.
        #[arg(long, conflicts_with = "set_seconds")]
        clear: bool,
    },
    /// Delete a message for everyone: erased on this device at once (text, edits, file key),
    /// the redaction queued for the server. One's own, or anyone's with the power level.
    Redact {
        /// Room id.
        room: String,
        /// The event.
        event: String,
        /// A reason: it travels in clear, refused unless the managed configuration allows it
        /// (`redaction_reason_in_clear`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a file, encrypted (AES-256-CTR, key in the Megolm-encrypted event), as an
    /// `m.file` (`m.image` for images).
    SendFile {
        /// Room id.
        room: String,
        /// The file.
        path: PathBuf,
        /// Name shown to the recipients (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Media type (default: from the extension, else application/octet-stream).
        #[arg(long)]
        mimetype: Option<String>,
    },
    /// Sync, then download a received file through the content scanner (antivirus), verify and
    /// decrypt it. Writes --out only if the file is clean and intact; never overwrites.
    Download {
        /// Room id.
        room: String,
        /// Event id of the file message.
        event_id: String,
        /// Where to write the file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sync and print each decrypted message as it arrives (--json: one object per line).
    Listen {
        /// Long-poll timeout in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Exit after this many messages.
        #[arg(long)]
        max_messages: Option<usize>,
        /// Also print what the account's push rules say notifies (evaluated here on the
        /// decrypted messages: the persistent-connection mode's notifications).
        #[arg(long)]
        notify: bool,
    },
    /// Print the last messages of a room from the local store.
    Messages {
        /// Room id.
        room: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Load older messages of a room from the server (scroll-back), decrypt and store them,
    /// and print them oldest first.
    History {
        /// Room id.
        room: String,
        /// How many older messages to load.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Query and print a user's devices, with their pinned keys and trust state, and the
    /// user's cross-signing identity as pinned here.
    Devices {
        /// User id.
        user: String,
        /// Accept the user's changed identity without verifying them again: the new master
        /// key, as `devices` printed it ("the server now shows …"). Only where the managed
        /// configuration allows it (`allow_identity_acknowledgement`).
        #[arg(long, value_name = "MASTER_KEY")]
        acknowledge: Option<String>,
    },
    /// Verify another user (or another device of ours) interactively: emoji and numbers to
    /// compare (SAS), or QR codes. On success their identity is signed by ours (or our device
    /// by our identity) and uploaded.
    Verify {
        /// The user to verify (our own user id for another of our devices). Optional with
        /// --incoming (any user).
        user: Option<String>,
        /// One device of the user: the request goes to that device only (to-device), and only
        /// its key can complete the verification.
        device: Option<String>,
        /// A room with the user: the verification goes through its (encrypted) timeline, as
        /// other clients expect for another user. Without it: to-device messages.
        #[arg(long)]
        room: Option<String>,
        /// Wait for the other side's request instead of sending one.
        #[arg(long)]
        incoming: bool,
        /// Show a QR code (its payload in base64, for an app to render) instead of emoji.
        #[arg(long)]
        qr: bool,
        /// Scan the other side's QR code: its payload in base64.
        #[arg(long)]
        scan: Option<String>,
        /// Answer yes to "do they match?" without asking (scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Push notifications: this device's pusher on the homeserver, pointed at the managed
    /// configuration's push gateway (`push_gateway_url`), event ids only.
    Notifications {
        #[command(subcommand)]
        action: NotificationsAction,
    },
    /// The notification for an event a push announced (room and event ids): fetched over the
    /// pinned transport and decrypted here, waiting up to --wait seconds for its room key
    /// (to-device messages only; safe while `listen` runs). Fails with `cannot_decrypt_yet`
    /// if the key has not come.
    Notification {
        /// The room id.
        room: String,
        /// The event id.
        event: String,
        /// How long to wait for a missing room key, in seconds (at most 30).
        #[arg(long, default_value_t = 5)]
        wait: u64,
    },
    /// Our cross-signing identity: where it stands (default), set it up, or replace it.
    CrossSigning {
        #[command(subcommand)]
        action: Option<CrossSigningAction>,
    },
    /// List the security journal (refused events, …).
    SecurityEvents,
    /// Log out and forget the session.
    Logout,
    /// Crypto-shred the data directory: destroy the KEK on the token, delete vault and database.
    Wipe {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
}

// Every block the CLI frees is wiped first: hyper's, rustls's and serde's buffers included.
tchap_secure_memory::install_zeroizing_allocator!();

fn main() -> ExitCode {
    // No core dumps, no attaching by other processes: before any secret is read.
    tchap_secure_memory::harden_process();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::CONFIG } else { 0 });
        }
    };
    init_logging();
    let out = Output::new(cli.json);
    match run(cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TCHAP_SECURE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn load_config(cli: &Cli) -> Result<Config, Failure> {
    let path = cli
        .config
        .as_ref()
        .ok_or_else(|| Failure::usage("--config FILE is required"))?;
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::config(format!("cannot read {}: {e}", path.display())))?;
    Config::from_json(&bytes).map_err(|e| Failure::from(tchap_secure_core::Error::from(e)))
}

fn transport(cli: &Cli, config: &Config) -> Result<Transport, Failure> {
    let total = Duration::from_secs(cli.timeout_secs.max(1));
    let defaults = Limits::default();
    let limits = Limits {
        connect_timeout: defaults.connect_timeout.min(total),
        read_timeout: defaults.read_timeout.min(total),
        request_timeout: total,
        ..defaults
    };
    Ok(Transport::with_limits(config, limits).map_err(tchap_secure_core::Error::from)?)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("async runtime: {e}")))
}

fn open_token(cli: &Cli, stdin: &mut secrets::Stdin) -> Result<Pkcs11Vault, Failure> {
    let pin = secrets::read_secret(stdin, cli.pin_stdin, "TCHAP_SECURE_TOKEN_PIN", "token PIN")?;
    let config = Pkcs11Config {
        module: cli.pkcs11_module.clone(),
        token_label: cli.token_label.clone(),
    };
    Ok(Pkcs11Vault::open(&config, &pin).map_err(tchap_secure_core::Error::from)?)
}

fn data_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    cli.data_dir
        .clone()
        .ok_or_else(|| Failure::usage("--data-dir DIR is required"))
}

fn run(cli: Cli, out: &Output) -> Result<(), Failure> {
    match &cli.command {
        Command::Pin { cert } => return pin(cert, out),
        Command::CheckConfig { file } => {
            let bytes = std::fs::read(file)
                .map_err(|e| Failure::config(format!("cannot read {}: {e}", file.display())))?;
            let config = Config::from_json(&bytes).map_err(tchap_secure_core::Error::from)?;
            out.config_ok(&config);
            return Ok(());
        }
        Command::Probe => {
            let config = load_config(&cli)?;
            let transport = transport(&cli, &config)?;
            let versions = runtime()?.block_on(Client::probe(&transport))?;
            out.probe_ok(config.homeserver_url().as_str(), &versions.versions);
            return Ok(());
        }
        _ => {}
    }

    let config = load_config(&cli)?;
    let dir = data_dir(&cli)?;
    let mut stdin = secrets::Stdin::new();
    let token = open_token(&cli, &mut stdin)?;
    if let Command::Wipe { yes } = &cli.command {
        if !yes {
            return Err(Failure::usage(
                "wipe destroys every local secret: pass --yes",
            ));
        }
        // This device's pushers first, if the vault opens and the homeserver answers within
        // 10 s: the wipe itself never waits on the network.
        if let (Ok(rt), Ok(transport)) = (runtime(), transport(&cli, &config))
            && let Ok(mut client) =
                Client::open_with_transport(config.clone(), &dir, &token, transport)
        {
            rt.block_on(client.unregister_pushers_within(std::time::Duration::from_secs(10)));
        }
        tchap_secure_core::wipe_data_dir(&dir, &token)?;
        out.message(
            "wiped",
            "the KEK is destroyed and the data directory is erased",
        );
        return Ok(());
    }
    let rt = runtime()?;
    let transport = transport(&cli, &config)?;
    let mut client = Client::open_with_transport(config, &dir, &token, transport)?;
    let result = rt.block_on(async {
        match &cli.command {
            Command::Login {
                user,
                email,
                device_name,
                password_stdin,
            } => {
                let password = secrets::read_secret(
                    &mut stdin,
                    *password_stdin,
                    "TCHAP_SECURE_PASSWORD",
                    "password",
                )?;
                let session = match (user, email) {
                    (_, Some(address)) => {
                        client
                            .login_with_email(address, &password, device_name)
                            .await?
                    }
                    (Some(user), None) => client.login(user, &password, device_name).await?,
                    (None, None) => {
                        return Err(tchap_secure_core::Error::InvalidArgument {
                            what: "login needs --user or --email".into(),
                        }
                        .into());
                    }
                };
                out.session(&session);
            }
            Command::Whoami => out.whoami(&client.whoami().await?),
            Command::Sync {
                timeout_ms,
                forever,
            } => {
                let timeout = Duration::from_millis(*timeout_ms);
                if *forever {
                    client
                        .sync_loop(timeout, |s| {
                            out.sync(s);
                            std::ops::ControlFlow::Continue(())
                        })
                        .await?;
                } else {
                    out.sync(&client.sync_once(timeout).await?);
                }
            }
            Command::Rooms => {
                client.sync_once(Duration::ZERO).await?;
                out.rooms(&client.rooms()?);
            }
            Command::Members { room } => {
                client.sync_once(Duration::ZERO).await?;
                // Each name parsed and checked against the managed organisations (issue 19).
                let members = client.members(room)?;
                // Each member's cross-signing identity as pinned here (issue 16).
                let identities = members
                    .iter()
                    .map(|m| client.identity(&m.user_id).map(|i| i.map(|i| i.state)))
                    .collect::<Result<Vec<_>, _>>()?;
                out.members(room, &members, &identities);
            }
            Command::CreateRoom {
                name,
                invite,
                direct,
            } => {
                if *direct {
                    // A direct chat with someone is the one that exists, if any (`m.direct`).
                    let [user] = invite.as_slice() else {
                        return Err(Failure::usage(
                            "a direct chat is with one user: --direct --invite USER",
                        ));
                    };
                    client.sync_once(Duration::ZERO).await?;
                    let (room, created) = client.open_direct_room(user).await?;
                    out.direct_room(&room, created);
                } else {
                    let room = client.create_room(name.as_deref(), invite, false).await?;
                    out.message("room_id", &room);
                }
            }
            Command::Invite { room, user, email } => {
                let invited = match (user, email) {
                    (_, Some(address)) => client.invite_by_email(room, address).await?,
                    (Some(user), None) => {
                        client.invite(room, user).await?;
                        user.clone()
                    }
                    (None, None) => return Err(Failure::usage("invite needs a user or --email")),
                };
                out.message("invited", &invited);
            }
            Command::Directory { term, limit } => {
                out.directory(&client.search_directory(term, *limit).await?);
            }
            Command::Lookup { email } => {
                let found = client.lookup_email(email).await?;
                out.lookup(email, found.as_deref());
            }
            Command::Account { action } => {
                match action {
                    None | Some(AccountAction::Status) => {}
                    Some(AccountAction::Renew) => {
                        client.request_renewal().await?;
                    }
                    Some(AccountAction::Resume) => {
                        client.resume().await?;
                    }
                }
                out.account(client.account_lock(), client.must_shred());
            }
            Command::OwnDevices {
                log_out,
                password_stdin,
            } => {
                if !log_out.is_empty() {
                    let password = secrets::read_secret(
                        &mut stdin,
                        *password_stdin,
                        "TCHAP_SECURE_PASSWORD",
                        "password",
                    )?;
                    client.log_out_devices(log_out, Some(&password)).await?;
                }
                out.own_devices(&client.own_devices().await?);
            }
            Command::Join { room } => {
                client.join(room).await?;
                out.message("joined", room);
            }
            Command::Leave { room } => {
                client.leave(room).await?;
                out.message("left", room);
            }
            Command::Send {
                room,
                text,
                mentions,
            } => {
                let body = match text {
                    Some(t) => t.clone(),
                    None => secrets::read_text_stdin()?,
                };
                let event_id = if mentions.is_empty() {
                    client.send_text(room, &body).await?
                } else {
                    client.send_text_mentioning(room, &body, mentions).await?
                };
                out.message("event_id", &event_id);
            }
            Command::Reply { room, event, text } => {
                let body = match text {
                    Some(t) => t.clone(),
                    None => secrets::read_text_stdin()?,
                };
                let event_id = client.reply(room, event, &body).await?;
                out.message("event_id", &event_id);
            }
            Command::Edit { room, event, text } => {
                let body = match text {
                    Some(t) => t.clone(),
                    None => secrets::read_text_stdin()?,
                };
                let event_id = client.edit(room, event, &body).await?;
                out.message("event_id", &event_id);
            }
            Command::Read { room, event } => {
                let event = match event {
                    Some(e) => e.clone(),
                    None => client
                        .messages(room, 1)?
                        .pop()
                        .map(|m| m.event_id)
                        .ok_or_else(|| tchap_secure_core::Error::InvalidArgument {
                            what: format!("no message in {room}"),
                        })?,
                };
                client.mark_read(room, &event).await?;
                out.unread(room, &client.unread(room)?);
            }
            Command::Unread { room } => out.unread(room, &client.unread(room)?),
            Command::Retention {
                room,
                set_seconds,
                clear,
            } => {
                if let Some(secs) = set_seconds {
                    client
                        .set_retention(room, Some(Duration::from_secs(*secs)))
                        .await?;
                } else if *clear {
                    client.set_retention(room, None).await?;
                }
                out.retention(room, &client.retention(room)?);
            }
            Command::Redact {
                room,
                event,
                reason,
            } => {
                let deletion = client.redact(room, event, reason.as_deref()).await?;
                out.deletion(room, event, &deletion);
            }
            Command::SendFile {
                room,
                path,
                name,
                mimetype,
            } => {
                let event_id = send_file(
                    &mut client,
                    room,
                    path,
                    name.as_deref(),
                    mimetype.as_deref(),
                )
                .await?;
                out.message("event_id", &event_id);
            }
            Command::Download {
                room,
                event_id,
                out: path,
            } => {
                client.sync_once(Duration::ZERO).await?;
                let bytes = download(&mut client, room, event_id, path).await?;
                out.downloaded(event_id, path, bytes);
            }
            Command::Listen {
                timeout_ms,
                max_messages,
                notify,
            } => {
                let mut seen = 0usize;
                let max = max_messages.unwrap_or(usize::MAX);
                if max > 0 {
                    client
                        .sync_loop(Duration::from_millis(*timeout_ms), |s| {
                            for m in &s.messages {
                                out.timeline_event(m);
                                seen += 1;
                            }
                            for m in &s.edits {
                                out.timeline_event(m);
                            }
                            for r in &s.redactions {
                                out.redaction(r);
                            }
                            for u in &s.outgoing {
                                out.outgoing(u);
                            }
                            if *notify {
                                for n in &s.notifications {
                                    out.pushed(n);
                                }
                            }
                            if seen >= max {
                                std::ops::ControlFlow::Break(())
                            } else {
                                std::ops::ControlFlow::Continue(())
                            }
                        })
                        .await?;
                }
            }
            Command::Messages { room, limit } => {
                for m in client.messages(room, *limit)? {
                    out.timeline_event(&m);
                }
            }
            Command::History { room, limit } => {
                let history = client.paginate_back(room, *limit).await?;
                for m in &history.events {
                    out.timeline_event(m);
                }
                out.history_end(room, history.events.len(), history.reached_start);
            }
            Command::Devices { user, acknowledge } => {
                let devices = if let Some(master) = acknowledge {
                    // The acknowledgement asks the server for the devices again at once.
                    client.acknowledge_identity_change(user, master).await?;
                    client.known_devices(user)?
                } else {
                    client.devices(user).await?
                };
                let trust = devices
                    .iter()
                    .map(|d| client.device_trust(d))
                    .collect::<Result<Vec<_>, _>>()?;
                out.devices(user, client.identity(user)?.as_ref(), &devices, &trust);
            }
            Command::Verify {
                user,
                device,
                room,
                incoming,
                qr,
                scan,
                yes,
            } => {
                verify::run(
                    &mut client,
                    out,
                    &mut stdin,
                    verify::Options {
                        user: user.as_deref(),
                        device: device.as_deref(),
                        room: room.as_deref(),
                        incoming: *incoming,
                        qr: *qr,
                        scan: scan.as_deref(),
                        yes: *yes,
                    },
                )
                .await?;
            }
            Command::Notifications { action } => match action {
                NotificationsAction::Register {
                    app_id,
                    pushkey,
                    device_name,
                } => {
                    client.register_pusher(app_id, pushkey, device_name).await?;
                    out.message("pusher_registered", app_id);
                }
                NotificationsAction::Unregister => {
                    let removed = client.unregister_pushers().await?;
                    out.message("pushers_removed", &removed.to_string());
                }
                NotificationsAction::List => {
                    out.pushers(&client.pushers().await?, &client.registered_pushers()?);
                }
            },
            Command::Notification { room, event, wait } => {
                let n = client
                    .notification(room, event, Duration::from_secs(*wait))
                    .await?;
                out.notification(&n);
            }
            Command::CrossSigning { action } => {
                let status = match action {
                    None | Some(CrossSigningAction::Status) => client.cross_signing_status()?,
                    Some(CrossSigningAction::Bootstrap { password_stdin }) => {
                        let password = if *password_stdin
                            || std::env::var_os("TCHAP_SECURE_PASSWORD").is_some()
                        {
                            Some(secrets::read_secret(
                                &mut stdin,
                                *password_stdin,
                                "TCHAP_SECURE_PASSWORD",
                                "password",
                            )?)
                        } else {
                            None
                        };
                        client.bootstrap_cross_signing(password.as_ref()).await?
                    }
                    Some(CrossSigningAction::Reset { password_stdin }) => {
                        let password = secrets::read_secret(
                            &mut stdin,
                            *password_stdin,
                            "TCHAP_SECURE_PASSWORD",
                            "password",
                        )?;
                        client.reset_cross_signing(&password).await?
                    }
                };
                out.cross_signing(&status);
            }
            Command::SecurityEvents => out.security_events(
                &client
                    .store()
                    .security_events()
                    .map_err(tchap_secure_core::Error::from)?,
            ),
            Command::Logout => {
                client.logout().await?;
                out.message("logged_out", "session removed");
            }
            Command::Probe
            | Command::Pin { .. }
            | Command::CheckConfig { .. }
            | Command::Wipe { .. } => {}
        }
        Ok::<(), Failure>(())
    });
    // A revoked account (deactivated, token revoked) under `on_account_revoked: shred`: the
    // data directory is crypto-shredded now, whatever the command was.
    if result.is_err() && client.must_shred() {
        client.wipe(&token)?;
        out.message(
            "shredded",
            "the account was revoked: the KEK is destroyed and the data directory is erased",
        );
    }
    result
}

/// Media types by extension, for the common office and image formats; anything else is sent
/// as `application/octet-stream`.
const MEDIA_TYPES: &[(&str, &str)] = &[
    ("pdf", "application/pdf"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("zip", "application/zip"),
];

fn media_type_of(path: &std::path::Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    MEDIA_TYPES.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

async fn send_file(
    client: &mut Client,
    room: &str,
    path: &std::path::Path,
    name: Option<&str>,
    mimetype: Option<&str>,
) -> Result<String, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?
        .len();
    let default_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outgoing = OutgoingFile {
        name: name.unwrap_or(&default_name),
        mimetype: mimetype.or_else(|| media_type_of(path)),
        len,
    };
    Ok(client.send_file(room, file, outgoing).await?)
}

/// Downloads into a private temporary file next to `path` and moves it into place only when
/// the scanner said clean and the whole ciphertext matched: a refused or tampered file never
/// appears at `path`, and an existing file is never overwritten.
async fn download(
    client: &mut Client,
    room: &str,
    event_id: &str,
    path: &std::path::Path,
) -> Result<u64, Failure> {
    if path.exists() {
        return Err(Failure::usage(format!(
            "{} exists: choose another --out",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut partial = tempfile::Builder::new()
        .prefix(".tchap-secure-download-")
        .tempfile_in(&dir)
        .map_err(|e| Failure::usage(format!("cannot write in {}: {e}", dir.display())))?;
    let bytes = client
        .download_file(
            room,
            event_id,
            std::io::BufWriter::new(partial.as_file_mut()),
        )
        .await?;
    partial
        .as_file()
        .sync_all()
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", dir.display())))?;
    partial
        .persist_noclobber(path)
        .map_err(|e| Failure::usage(format!("cannot create {}: {}", path.display(), e.error)))?;
    Ok(bytes)
}

fn pin(cert: &PathBuf, out: &Output) -> Result<(), Failure> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let bytes = std::fs::read(cert)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", cert.display())))?;
    let mut pins = Vec::new();
    for der in CertificateDer::pem_slice_iter(&bytes) {
        let der = der.map_err(|e| Failure::usage(format!("malformed PEM: {e}")))?;
        let pin = spki_pin_of_certificate(&der)
            .map_err(|e| Failure::usage(format!("not a usable certificate: {e}")))?;
        pins.push(pin.to_base64());
    }
    if pins.is_empty() {
        return Err(Failure::usage("no certificate in the file"));
    }
    out.pins(&pins);
    Ok(())
}
