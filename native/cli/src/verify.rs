//! `tchap-secure verify`: interactive key verification (SAS emoji and numbers, or QR codes) with
//! another user or another device of ours, as requester or as responder.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tchap_secure_core::Client;
use tchap_secure_core::client::verification::VerificationInfo;

use crate::exit::{self, Failure};
use crate::output::Output;
use crate::secrets::Stdin;

/// How long a verification may take before the CLI gives up (the flow itself times out after
/// ten minutes).
const GIVE_UP: Duration = Duration::from_secs(10 * 60);
/// The long-poll of each sync while waiting for the other side.
const POLL: Duration = Duration::from_millis(1000);

/// What `verify` does.
pub(crate) struct Options<'a> {
    /// The user to verify (ours for another of our devices); `None` with `incoming`: anyone.
    pub(crate) user: Option<&'a str>,
    /// One device of the user: the only one asked (to-device), or the only one answered
    /// with `incoming`.
    pub(crate) device: Option<&'a str>,
    /// A room with the user, for an in-room flow.
    pub(crate) room: Option<&'a str>,
    /// Wait for a request instead of sending one.
    pub(crate) incoming: bool,
    /// Show a QR code (its payload, base64) instead of comparing emoji.
    pub(crate) qr: bool,
    /// The other side's QR payload (base64), scanned.
    pub(crate) scan: Option<&'a str>,
    /// Answer "yes" to "do they match?" without asking (scripts, tests).
    pub(crate) yes: bool,
}

/// Syncs until `pred` holds for the flow (or any flow, for `flow_id` empty), or the flow ends
/// without it.
async fn wait_for(
    client: &mut Client,
    flow_id: &str,
    what: &str,
    mut pred: impl FnMut(&VerificationInfo) -> bool,
) -> Result<VerificationInfo, Failure> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        if let Some(info) = client.verification(flow_id) {
            if pred(&info) {
                return Ok(info);
            }
            if info.state == "cancelled" || info.state == "done" {
                return Ok(info);
            }
        }
        if Instant::now() > deadline {
            return Err(Failure::other(format!("gave up waiting for {what}")));
        }
        client.sync_once(POLL).await?;
    }
}

fn ended(out: &Output, info: &VerificationInfo) -> Result<bool, Failure> {
    match info.state.as_str() {
        "done" => {
            out.verification(info);
            Ok(true)
        }
        "cancelled" => {
            out.verification(info);
            Err(Failure {
                code: exit::CRYPTO,
                reason: "verification_cancelled",
                message: format!(
                    "verification cancelled by {}: {} ({})",
                    if info.cancelled_by_us == Some(true) {
                        "us"
                    } else {
                        "them"
                    },
                    info.cancel_reason.as_deref().unwrap_or(""),
                    info.cancel_code.as_deref().unwrap_or("")
                ),
            })
        }
        _ => Ok(false),
    }
}

pub(crate) async fn run(
    client: &mut Client,
    out: &Output,
    stdin: &mut Stdin,
    options: Options<'_>,
) -> Result<(), Failure> {
    let flow_id = if options.incoming {
        // Wait for a request (from `user` if given).
        let deadline = Instant::now() + GIVE_UP;
        let info = loop {
            let waiting = client.verifications().into_iter().find(|v| {
                v.state == "received"
                    && options.user.is_none_or(|u| v.user_id == u)
                    && options
                        .device
                        .is_none_or(|d| v.device_id.as_deref() == Some(d))
            });
            if let Some(info) = waiting {
                break info;
            }
            if Instant::now() > deadline {
                return Err(Failure::other("no verification request arrived"));
            }
            client.sync_once(POLL).await?;
        };
        out.verification(&info);
        client.accept_verification(&info.flow_id).await?;
        info.flow_id
    } else {
        let user = options
            .user
            .ok_or_else(|| Failure::usage("verify: a user id, or --incoming"))?;
        let flow_id = match (options.device, options.room) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage(
                    "verify: a device is asked to-device, not in a room (drop --room)",
                ));
            }
            (Some(device), None) => client.request_device_verification(user, device).await?,
            (None, room) => client.request_verification(user, room).await?,
        };
        let info = wait_for(client, &flow_id, "the other side to accept", |i| {
            i.state == "ready"
        })
        .await?;
        out.verification(&info);
        if ended(out, &info)? {
            return Ok(());
        }
        flow_id
    };

    if let Some(scanned) = options.scan {
        let bytes = STANDARD
            .decode(scanned.trim())
            .map_err(|_| Failure::usage("--scan: the QR payload is not base64"))?;
        client.scan_qr(&flow_id, &bytes).await?;
    } else if options.qr {
        let payload = client.show_qr(&flow_id).await?;
        out.message("qr_payload", &STANDARD.encode(&payload));
        let info = wait_for(client, &flow_id, "the other side to scan", |i| {
            i.state == "qr_scanned"
        })
        .await?;
        if ended(out, &info)? {
            return Ok(());
        }
        if !confirm(
            out,
            stdin,
            options.yes,
            "Did the other device scan this code? [y/N]",
        )? {
            client.cancel_verification(&flow_id).await?;
            return Err(Failure::other("verification cancelled"));
        }
        client.confirm_qr_scanned(&flow_id).await?;
    } else {
        // SAS: the requester starts it (the responder waits for the other side's start).
        let has_emoji = |i: &VerificationInfo| i.emoji.is_some();
        if !options.incoming {
            client.start_sas(&flow_id).await?;
        }
        let info = wait_for(client, &flow_id, "the emoji", has_emoji).await?;
        if ended(out, &info)? {
            return Ok(());
        }
        out.verification(&info);
        if confirm(
            out,
            stdin,
            options.yes,
            "Do the emoji and numbers match the other screen? [y/N]",
        )? {
            client.confirm_sas(&flow_id).await?;
        } else {
            let info = client.sas_mismatch(&flow_id).await?;
            ended(out, &info)?;
            return Ok(());
        }
    }
    let info = wait_for(client, &flow_id, "the end of the verification", |_| false).await?;
    if !ended(out, &info)? {
        return Err(Failure::other("the verification did not finish"));
    }
    Ok(())
}

fn confirm(out: &Output, stdin: &mut Stdin, yes: bool, question: &str) -> Result<bool, Failure> {
    if yes {
        return Ok(true);
    }
    out.prompt(question);
    Ok(matches!(
        stdin.read_answer()?.as_deref(),
        Some("y" | "Y" | "yes" | "oui" | "o")
    ))
}
