//! The exported native methods of `fr.gouv.tchap.secure.Native`, in the order of `Native.java`.
//!
//! Each one is a `#[unsafe(no_mangle)] extern "system"` function whose name and signature are
//! the JNI ones for the Java declaration (static method: `EnvUnowned`, `JClass`, then the
//! arguments), and whose whole body is `funnel::run_ffi_safe`: no code runs outside the funnel.
//! Handles are borrowed through `handle::borrow`; tables follow the column orders
//! documented in `Native.java`.

#![allow(
    unsafe_code,
    reason = "#[unsafe(no_mangle)] exports: the JVM resolves native methods by symbol name"
)]

use std::path::PathBuf;
use std::time::Duration;

use jni::objects::{JByteArray, JClass, JObject, JObjectArray, JString};
use jni::sys::{jint, jlong};
use jni::{Env, EnvUnowned};
use tchap_secure_core::client::media::OutgoingFile;
use tchap_secure_core::client::receipts::Unread;
use tchap_secure_core::client::relations::Deletion;
use tchap_secure_core::client::retention::Retention;
use tchap_secure_core::client::verification::{SasEmoji, VerificationInfo};
use tchap_secure_core::config::KNOWN_KEYS;
use tchap_secure_core::store::identity::IdentityRecord;
use tchap_secure_core::store::{DeviceRecord, DeviceState, TimelineEvent};
use tchap_secure_core::{
    Config, CrossSigningStatus, IdentityState, Notification, NotificationKind,
};

use crate::client::ClientHandle;
use crate::convert::{self, bool_cell};
use crate::error::BridgeError;
use crate::files::{self, Access};
use crate::funnel::run_ffi_safe;
use crate::handle;
use crate::key_binder::JavaKeyBinder;
use crate::sync_thread::SyncMode;

/// `String[]`, as returned to Java.
type StringArray<'local> = JObjectArray<'local, JString<'local>>;
/// `String[][]`, as returned to Java.
type StringTable<'local> = JObjectArray<'local, StringArray<'local>>;

/// Runs `f` with the client behind `client`, under its lock.
pub(crate) fn with_client<T>(
    client: jlong,
    f: impl FnOnce(&mut tchap_secure_core::Client, &tokio::runtime::Runtime) -> Result<T, BridgeError>,
) -> Result<T, BridgeError> {
    handle::borrow::<ClientHandle>(client)?
        .core()
        .with_client(f)
}

fn non_negative(value: jint, what: &'static str) -> Result<u32, BridgeError> {
    u32::try_from(value).map_err(|_| BridgeError::InvalidArgument {
        what,
        why: "negative",
    })
}

// --- configuration -----------------------------------------------------------------------

/// `static native String[] configKeys()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_configKeys<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| convert::string_array(env, KNOWN_KEYS))
}

/// `static native String[] checkConfig(byte[] configJson)`: the codes of the valid
/// configuration's warnings (`Config::warnings`), or an exception if it is invalid.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_checkConfig<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    config_json: JByteArray<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let bytes = convert::public_bytes(env, &config_json, "configJson")?;
        let config = Config::from_json(&bytes)?;
        let codes: Vec<&str> = config.warnings().into_iter().map(|w| w.code()).collect();
        convert::string_array(env, &codes)
    })
}

// --- client lifecycle ----------------------------------------------------------------------

/// `static native long clientOpen(byte[] configJson, String dataDir, KeyBinder binder)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_clientOpen<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    config_json: JByteArray<'local>,
    data_dir: JString<'local>,
    binder: JObject<'local>,
) -> jlong {
    run_ffi_safe(&mut env, |env| {
        let bytes = convert::public_bytes(env, &config_json, "configJson")?;
        let config = Config::from_json(&bytes)?;
        let data_dir = PathBuf::from(convert::string_arg(env, &data_dir, "dataDir")?);
        let binder = JavaKeyBinder::new(env, &binder)?;
        let client = ClientHandle::open(config, &data_dir, binder)?;
        Ok(handle::into_raw(client))
    })
}

/// `static native void clientClose(long client)`: stops the sync thread, then releases the
/// handle. A 0 handle is a no-op (like `free(NULL)`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_clientClose<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| {
        if client == 0 {
            return Ok(());
        }
        handle::close::<ClientHandle>(client, ClientHandle::stop_sync)
    });
}

// --- session -------------------------------------------------------------------------------

/// `static native String[] login(long client, String user, byte[] password, String
/// deviceName)`: `{userId, deviceId}`. The password array is zeroed before the network call.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_login<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user: JString<'local>,
    password: JByteArray<'local>,
    device_name: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        // The secret first: the Java array is zeroed even if another argument is refused.
        let password = convert::take_secret(env, &password, "password")?;
        let user = convert::string_arg(env, &user, "user")?;
        let device_name = convert::string_arg(env, &device_name, "deviceName")?;
        let session = with_client(client, |c, rt| {
            Ok(rt.block_on(c.login(&user, &password, &device_name))?)
        })?;
        drop(password);
        convert::string_array(env, &[&session.user_id, &session.device_id])
    })
}

/// `static native String[] loginWithEmail(long client, String address, byte[] password,
/// String deviceName)`: `{userId, deviceId}`, logged in by the work e-mail address bound to the
/// account. The password array is zeroed before the network call.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_loginWithEmail<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    address: JString<'local>,
    password: JByteArray<'local>,
    device_name: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let password = convert::take_secret(env, &password, "password")?;
        let address = convert::string_arg(env, &address, "address")?;
        let device_name = convert::string_arg(env, &device_name, "deviceName")?;
        let session = with_client(client, |c, rt| {
            Ok(rt.block_on(c.login_with_email(&address, &password, &device_name))?)
        })?;
        drop(password);
        convert::string_array(env, &[&session.user_id, &session.device_id])
    })
}

/// `static native String[] session(long client)`: `{userId, deviceId}` or null.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_session<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        match with_client(client, |c, _| Ok(c.session()))? {
            Some(s) => convert::string_array(env, &[&s.user_id, &s.device_id]),
            None => Ok(StringArray::default()),
        }
    })
}

/// `static native String whoami(long client)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_whoami<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let who = with_client(client, |c, rt| Ok(rt.block_on(c.whoami())?))?;
        convert::java_string(env, &who.user_id)
    })
}

/// `static native void logout(long client)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_logout<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| {
        with_client(client, |c, rt| Ok(rt.block_on(c.logout())?))
    });
}

// --- rooms and messages --------------------------------------------------------------------

/// `static native void syncOnce(long client, int timeoutMs)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_syncOnce<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    timeout_ms: jint,
) {
    run_ffi_safe(&mut env, |_| {
        let timeout = Duration::from_millis(u64::from(non_negative(timeout_ms, "timeoutMs")?));
        with_client(client, |c, rt| {
            rt.block_on(c.sync_once(timeout))?;
            Ok(())
        })
    });
}

/// `static native String[][] rooms(long client)`: `{roomId, membership, name|null,
/// encryption|null, joinedMembers, invitedMembers}`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_rooms<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let rooms = with_client(client, |c, _| Ok(c.rooms()?))?;
        let rows: Vec<Vec<Option<String>>> = rooms
            .into_iter()
            .map(|r| {
                vec![
                    Some(r.room_id),
                    Some(r.membership),
                    r.name,
                    r.encryption,
                    Some(r.joined_members.to_string()),
                    Some(r.invited_members.to_string()),
                ]
            })
            .collect();
        convert::table(env, &rows)
    })
}

/// `static native String createRoom(long client, String name, String[] invite)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_createRoom<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    name: JString<'local>,
    invite: StringArray<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let name = convert::optional_string_arg(env, &name)?;
        let invite = convert::string_array_arg(env, &invite, "invite")?;
        let room_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.create_room(name.as_deref(), &invite, false))?)
        })?;
        convert::java_string(env, &room_id)
    })
}

/// `static native void invite(long client, String roomId, String userId)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_invite<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    user_id: JString<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        with_client(client, |c, rt| {
            Ok(rt.block_on(c.invite(&room_id, &user_id))?)
        })
    });
}

/// `static native void join(long client, String roomId)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_join<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        with_client(client, |c, rt| Ok(rt.block_on(c.join(&room_id))?))
    });
}

/// `static native void leave(long client, String roomId)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_leave<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        with_client(client, |c, rt| Ok(rt.block_on(c.leave(&room_id))?))
    });
}

/// `static native String send(long client, String roomId, String body)`: the event id. A
/// message kept in the queue fails with `send_queued`, one refused for good with
/// `send_failed`; both exceptions carry its local id and the reason (`funnel.rs`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_send<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    body: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let body = convert::string_arg(env, &body, "body")?;
        let event_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.send_text(&room_id, &body))?)
        })?;
        convert::java_string(env, &event_id)
    })
}

/// `static native String sendMentioning(long client, String roomId, String body, String[]
/// userIds)`: as `send`, the message naming `userIds` in its encrypted `m.mentions` (their push
/// rules notify them by id, whatever the text).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_sendMentioning<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    body: JString<'local>,
    user_ids: StringArray<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let body = convert::string_arg(env, &body, "body")?;
        let user_ids = convert::string_array_arg(env, &user_ids, "userIds")?;
        let event_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.send_text_mentioning(&room_id, &body, &user_ids))?)
        })?;
        convert::java_string(env, &event_id)
    })
}

/// `static native String reply(long client, String roomId, String eventId, String body)`: the
/// reply's event id; sent as `send` (same exceptions), the relation encrypted. A message that
/// is not there or not readable is refused before anything is sent (`unknown_event`,
/// `event_redacted`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_reply<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    body: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let body = convert::string_arg(env, &body, "body")?;
        let reply_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.reply(&room_id, &event_id, &body))?)
        })?;
        convert::java_string(env, &reply_id)
    })
}

/// `static native String edit(long client, String roomId, String eventId, String body)`: the
/// edit's event id; sent as `send`. Refused before anything is sent: `edit_not_allowed` (not
/// our own text message), `unknown_event`, `event_redacted`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_edit<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    body: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let body = convert::string_arg(env, &body, "body")?;
        let edit_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.edit(&room_id, &event_id, &body))?)
        })?;
        convert::java_string(env, &edit_id)
    })
}

/// Columns of a `redact` row (`Deletion.fromRow` checks the same count).
pub(crate) const DELETION_COLUMNS: usize = 3;

/// A `redact` row (see `Native.redact`): `{state, id|null, reason|null}`, state the core's
/// serde name; id the redaction's event id (`sent`) or its local id (`queued`, `failed`).
fn deletion_row(d: &Deletion) -> [Option<&str>; DELETION_COLUMNS] {
    match d {
        Deletion::Sent { redaction_id } => [Some("sent"), Some(redaction_id), None],
        Deletion::Queued { local_id } => [Some("queued"), Some(local_id), None],
        Deletion::Failed { local_id, reason } => [Some("failed"), Some(local_id), Some(reason)],
        Deletion::NeverSent => [Some("never_sent"), None, None],
    }
}

/// `static native String[] redact(long client, String roomId, String eventId, String reason)`:
/// deletes the event for everyone — erased here before the call returns, whatever the row
/// says — and returns what became of the redaction (`deletion_row`). `reason` may be null; a
/// reason travels in clear and is refused (`reason_in_clear_refused`) unless the configuration
/// allows it. Other refusals: `redaction_not_allowed`, `redaction_other_room`,
/// `unknown_event`, `event_redacted`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_redact<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    reason: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let reason = convert::optional_string_arg(env, &reason)?;
        let deletion = with_client(client, |c, rt| {
            Ok(rt.block_on(c.redact(&room_id, &event_id, reason.as_deref()))?)
        })?;
        convert::row(env, &deletion_row(&deletion))
    })
}

/// Columns of a message row (`Message.fromRow` checks the same count).
pub(crate) const MESSAGE_COLUMNS: usize = 18;

/// A `messages` / `loadOlder` row (see `Native.messages`); also the row of the sync thread's
/// `onEditedRow`. An array, so that a column added here without `MESSAGE_COLUMNS` (and the
/// Java parser) does not compile.
pub(crate) fn message_row(e: &TimelineEvent) -> Vec<Option<String>> {
    let attachment = e.attachment.as_ref();
    let row: [Option<String>; MESSAGE_COLUMNS] = [
        Some(e.event_id.clone()),
        Some(e.sender.clone()),
        e.sender_display_name.clone(),
        Some(e.state.clone()),
        e.body.clone(),
        e.trust.clone(),
        e.sender_device.clone(),
        e.local_id.clone(),
        e.error.clone(),
        attachment.map(|a| a.msgtype.clone()),
        attachment.map(|a| a.name.clone()),
        attachment.and_then(|a| a.mimetype.clone()),
        // The sender's claim: one beyond a Java long is dropped, not passed on to break the
        // Java row parser.
        attachment
            .and_then(|a| a.size)
            .filter(|n| jlong::try_from(*n).is_ok())
            .map(|n| n.to_string()),
        e.reply_to.clone(),
        Some(bool_cell(e.edited).to_owned()),
        Some(e.sender_name.name.clone()),
        e.sender_name.organisation.clone(),
        Some(name_issues_cell(&e.sender_name.issues)),
    ];
    row.into()
}

/// `static native String[][] messages(long client, String roomId, int limit)`: message rows
/// (see `Native.java`), oldest first.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_messages<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    limit: jint,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let limit = non_negative(limit, "limit")?;
        let events = with_client(client, |c, _| Ok(c.messages(&room_id, limit)?))?;
        let rows: Vec<_> = events.iter().map(message_row).collect();
        convert::table(env, &rows)
    })
}

/// `static native String[][] loadOlder(long client, String roomId, int limit)`: up to `limit`
/// messages older than everything stored, fetched from the server (scroll-back). Row 0 is
/// `{reachedStart}` (`true|false`), then message rows, oldest first.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_loadOlder<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    limit: jint,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let limit = non_negative(limit, "limit")?;
        let history = with_client(client, |c, rt| {
            Ok(rt.block_on(c.paginate_back(&room_id, limit))?)
        })?;
        let mut rows = Vec::with_capacity(history.events.len() + 1);
        rows.push(vec![Some(bool_cell(history.reached_start).to_owned())]);
        rows.extend(history.events.iter().map(message_row));
        convert::table(env, &rows)
    })
}

// --- read state and disappearing messages --------------------------------------------------

/// `static native void markRead(long client, String roomId, String eventId)`: marks the room
/// read up to `eventId` (a stored event of the room; else `unknown_event`): here at once, and
/// on the server through the room's queue with the receipt the configuration allows.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_markRead<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        with_client(client, |c, rt| {
            Ok(rt.block_on(c.mark_read(&room_id, &event_id))?)
        })
    });
}

/// Columns of an `unread` row (`Unread.fromRow` checks the same count).
pub(crate) const UNREAD_COLUMNS: usize = 3;

/// An `unread` row (see `Native.unread`): `{messages, notify, highlight}`.
fn unread_row(u: &Unread) -> [Option<String>; UNREAD_COLUMNS] {
    let Unread {
        messages,
        notify,
        highlight,
    } = *u;
    [messages, notify, highlight].map(|n| Some(n.to_string()))
}

/// `static native String[] unread(long client, String roomId)`: the room's unread state, as
/// computed on the device (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_unread<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let unread = with_client(client, |c, _| Ok(c.unread(&room_id)?))?;
        convert::row(env, &unread_row(&unread))
    })
}

/// Columns of a `readMarkers` row (`ReadMarkers.fromRow` checks the same count).
pub(crate) const READ_MARKERS_COLUMNS: usize = 2;

/// `static native String[] readMarkers(long client, String roomId)`: `{readEventId|null,
/// fullyReadEventId|null}` (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_readMarkers<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let (read, fully_read) = with_client(client, |c, _| Ok(c.read_markers(&room_id)?))?;
        let row: [Option<String>; READ_MARKERS_COLUMNS] = [read, fully_read];
        convert::row(env, &row)
    })
}

/// `static native String readReceipts(long client)`: the receipt this device sends, per the
/// managed configuration (`ReadReceipts::as_str`: `public`, `private` or `off`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_readReceipts<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let receipts = with_client(client, |c, _| Ok(c.read_receipts()))?;
        convert::java_string(env, receipts.as_str())
    })
}

/// Columns of a `retention` row (`Retention.fromRow` checks the same count).
pub(crate) const RETENTION_COLUMNS: usize = 3;

/// A `retention` row (see `Native.retention`): `{roomMs|null, ceilingMs|null,
/// effectiveMs|null}`.
fn retention_row(r: &Retention) -> [Option<String>; RETENTION_COLUMNS] {
    let Retention {
        room_ms,
        ceiling_ms,
        effective_ms,
    } = *r;
    [room_ms, ceiling_ms, effective_ms].map(|ms| ms.map(|ms| ms.to_string()))
}

/// `static native String[] retention(long client, String roomId)`: the room's message lifetime
/// as this device honours it (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_retention<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let retention = with_client(client, |c, _| Ok(c.retention(&room_id)?))?;
        convert::row(env, &retention_row(&retention))
    })
}

/// `lifetimeMs` of `setRetention`: `-1` removes the lifetime; another negative value is a
/// caller bug.
fn lifetime_arg(lifetime_ms: jlong) -> Result<Option<Duration>, BridgeError> {
    match lifetime_ms {
        -1 => Ok(None),
        ms => u64::try_from(ms)
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| BridgeError::InvalidArgument {
                what: "lifetimeMs",
                why: "negative (only -1, for none)",
            }),
    }
}

/// `static native void setRetention(long client, String roomId, long lifetimeMs)`: sets the
/// room's message lifetime for every member (`-1`: removes it). Refused before anything is
/// sent: `retention_not_allowed` (no power level for `m.room.retention`),
/// `retention_too_short` (under 30 s).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_setRetention<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    lifetime_ms: jlong,
) {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let lifetime = lifetime_arg(lifetime_ms)?;
        with_client(client, |c, rt| {
            Ok(rt.block_on(c.set_retention(&room_id, lifetime))?)
        })
    });
}

/// `static native int purgeExpired(long client)`: purges every message whose lifetime is
/// over; returns how many.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_purgeExpired<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> jint {
    run_ffi_safe(&mut env, |_| {
        let purged = with_client(client, |c, _| Ok(c.purge_expired()?))?;
        Ok(jint::try_from(purged).unwrap_or(jint::MAX))
    })
}

/// `static native String nextExpiry(long client)`: when the next message expires, in ms since
/// the epoch as a decimal string, or null if none will (no network). A string, so that "none"
/// needs no sentinel among the longs.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_nextExpiry<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let next = with_client(client, |c, _| Ok(c.next_expiry()?))?;
        convert::optional_java_string(env, next.map(|ms| ms.to_string()).as_deref())
    })
}

// --- attachments -----------------------------------------------------------------------------

/// `static native String sendFileFd(long client, String roomId, int fd, long length, String
/// name, String mimetype)`: encrypts the file read from `fd` while uploading it and sends its
/// `m.file`/`m.image`; returns the event id. Takes ownership of `fd` first thing (`files.rs`):
/// it is closed when the call returns, whatever happens.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_sendFileFd<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    fd: jint,
    length: jlong,
    name: JString<'local>,
    mimetype: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let mut file = files::adopt(fd, Access::Read, "fd")?;
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let name = convert::string_arg(env, &name, "name")?;
        let mimetype = convert::optional_string_arg(env, &mimetype)?;
        let len = files::send_len(&mut file, length, "fd")?;
        let event_id = with_client(client, |c, rt| {
            let outgoing = OutgoingFile {
                name: &name,
                mimetype: mimetype.as_deref(),
                len,
            };
            Ok(rt.block_on(c.send_file(&room_id, file, outgoing))?)
        })?;
        convert::java_string(env, &event_id)
    })
}

/// `static native String sendFilePath(long client, String roomId, String path, String name,
/// String mimetype)`: as `sendFileFd`, the file opened from `path`; `name` null = the path's
/// last component.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_sendFilePath<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    path: JString<'local>,
    name: JString<'local>,
    mimetype: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let path = PathBuf::from(convert::string_arg(env, &path, "path")?);
        let name = convert::optional_string_arg(env, &name)?;
        let mimetype = convert::optional_string_arg(env, &mimetype)?;
        let (file, len, file_name) = files::open_to_send(&path)?;
        let event_id = with_client(client, |c, rt| {
            let outgoing = OutgoingFile {
                name: name.as_deref().unwrap_or(&file_name),
                mimetype: mimetype.as_deref(),
                len,
            };
            Ok(rt.block_on(c.send_file(&room_id, file, outgoing))?)
        })?;
        convert::java_string(env, &event_id)
    })
}

/// `static native long downloadFileFd(long client, String roomId, String eventId, int fd)`:
/// the attachment of `eventId`, through the content scanner, verified and decrypted into `fd`;
/// returns its length. Takes ownership of `fd` first thing (`files.rs`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_downloadFileFd<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    fd: jint,
) -> jlong {
    run_ffi_safe(&mut env, |env| {
        let file = files::adopt(fd, Access::Write, "fd")?;
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let sink = files::download_sink(&file, "fd")?;
        let written = with_client(client, |c, rt| {
            Ok(rt.block_on(c.download_file(&room_id, &event_id, sink))?)
        })?;
        files::sync_if_regular(&file, "fd")?;
        length(written)
    })
}

/// `static native long downloadFilePath(long client, String roomId, String eventId, String
/// path)`: as `downloadFileFd`, into a new file at `path`, which appears only once complete
/// and verified; an existing file is never overwritten (`file_exists`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_downloadFilePath<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    path: JString<'local>,
) -> jlong {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let path = PathBuf::from(convert::string_arg(env, &path, "path")?);
        let mut partial = files::download_partial(&path)?;
        let written = with_client(client, |c, rt| {
            let sink = std::io::BufWriter::new(partial.as_file_mut());
            Ok(rt.block_on(c.download_file(&room_id, &event_id, sink))?)
        })?;
        files::finish_download(partial, &path)?;
        length(written)
    })
}

/// `static native void closeFd(int fd)`: takes ownership of `fd` and closes it (the Java side
/// calls it when a method taking an `fd` fails before reaching the library, so that the
/// ownership contract holds on every path).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_closeFd<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    fd: jint,
) {
    run_ffi_safe(&mut env, |_| {
        drop(files::adopt(fd, Access::Any, "fd")?);
        Ok(())
    });
}

fn length(n: u64) -> Result<jlong, BridgeError> {
    jlong::try_from(n).map_err(|_| BridgeError::InvalidArgument {
        what: "file",
        why: "longer than a Java long",
    })
}

/// A `devices` row (7 columns, see `Native.devices`); `trust` is the core's
/// `Client::device_trust` for the device.
fn device_row<'a>(d: &'a DeviceRecord, trust: &'a str) -> Vec<Option<&'a str>> {
    let state = match d.state {
        DeviceState::Tofu => "tofu",
        DeviceState::Blocked => "blocked",
    };
    vec![
        Some(&d.device_id),
        Some(&d.ed25519),
        Some(state),
        Some(bool_cell(d.deleted)),
        d.display_name.as_deref(),
        Some(trust),
        Some(bool_cell(d.cross_signed)),
    ]
}

/// `static native String[][] devices(long client, String userId)`: `{deviceId, ed25519, state,
/// deleted, displayName|null, trust, crossSigned}`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_devices<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        let (devices, trust) = with_client(client, |c, rt| {
            let devices = rt.block_on(c.devices(&user_id))?;
            let trust = devices
                .iter()
                .map(|d| c.device_trust(d))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((devices, trust))
        })?;
        let rows: Vec<_> = devices
            .iter()
            .zip(trust)
            .map(|(d, t)| device_row(d, t))
            .collect();
        convert::table(env, &rows)
    })
}

// --- cross-signing ---------------------------------------------------------------------------

/// The wire name of an identity's trust state (the core's serde names).
fn identity_state(state: IdentityState) -> &'static str {
    match state {
        IdentityState::Pinned => "pinned",
        IdentityState::Verified => "verified",
        IdentityState::Changed => "changed",
    }
}

/// A cross-signing status row: `{master|null, hasPrivateKeys, deviceSigned, identity|null}`.
fn status_row(s: &CrossSigningStatus) -> Vec<Option<&str>> {
    let CrossSigningStatus {
        master,
        has_private_keys,
        device_signed,
        identity,
    } = s;
    vec![
        master.as_deref(),
        Some(bool_cell(*has_private_keys)),
        Some(bool_cell(*device_signed)),
        identity.map(identity_state),
    ]
}

/// An identity row: `{userId, master, selfSigning|null, state, changedMaster|null}`.
fn identity_row(i: &IdentityRecord) -> Vec<Option<&str>> {
    let IdentityRecord {
        user_id,
        master,
        self_signing,
        state,
        changed_master,
    } = i;
    vec![
        Some(user_id),
        Some(master),
        self_signing.as_deref(),
        Some(identity_state(*state)),
        changed_master.as_deref(),
    ]
}

/// `static native String[] crossSigningStatus(long client)`: `{master|null, hasPrivateKeys,
/// deviceSigned, identity|null}` (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_crossSigningStatus<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let status = with_client(client, |c, _| Ok(c.cross_signing_status()?))?;
        convert::row(env, &status_row(&status))
    })
}

/// `static native String[] bootstrapCrossSigning(long client, byte[] password)`: creates and
/// publishes our identity if the account has none, or finishes an interrupted bootstrap or
/// reset; returns the status row. `password` may be null (needed only if the server asks);
/// a given array is zeroed before the network call.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_bootstrapCrossSigning<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    password: JByteArray<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let password = if password.is_null() {
            None
        } else {
            Some(convert::take_secret(env, &password, "password")?)
        };
        let status = with_client(client, |c, rt| {
            Ok(rt.block_on(c.bootstrap_cross_signing(password.as_ref()))?)
        })?;
        drop(password);
        convert::row(env, &status_row(&status))
    })
}

/// `static native String[] resetCrossSigning(long client, byte[] password)`: replaces our
/// identity with a new one, authorised by the account password (zeroed before the network
/// call); returns the status row.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_resetCrossSigning<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    password: JByteArray<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let password = convert::take_secret(env, &password, "password")?;
        let status = with_client(client, |c, rt| {
            Ok(rt.block_on(c.reset_cross_signing(&password))?)
        })?;
        drop(password);
        convert::row(env, &status_row(&status))
    })
}

/// `static native String[] identity(long client, String userId)`: `{userId, master,
/// selfSigning|null, state, changedMaster|null}` as pinned here, or null (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_identity<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        match with_client(client, |c, _| Ok(c.identity(&user_id)?))? {
            Some(identity) => convert::row(env, &identity_row(&identity)),
            None => Ok(StringArray::default()),
        }
    })
}

/// `static native String[] acknowledgeIdentityChange(long client, String userId, String
/// master)`: accepts `userId`'s changed identity whose new master key is `master` (where the
/// configuration allows it); returns the identity row as pinned now.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_acknowledgeIdentityChange<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
    master: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        let master = convert::string_arg(env, &master, "master")?;
        let identity = with_client(client, |c, rt| {
            Ok(rt.block_on(c.acknowledge_identity_change(&user_id, &master))?)
        })?;
        convert::row(env, &identity_row(&identity))
    })
}

// --- push ------------------------------------------------------------------------------------

/// `static native void registerPusher(long client, String appId, String pushkey, String
/// deviceName)`: this device's pusher towards the configuration's push gateway.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_registerPusher<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    app_id: JString<'local>,
    pushkey: JString<'local>,
    device_name: JString<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let app_id = convert::string_arg(env, &app_id, "appId")?;
        let pushkey = convert::string_arg(env, &pushkey, "pushkey")?;
        let device_name = convert::string_arg(env, &device_name, "deviceName")?;
        with_client(client, |c, rt| {
            Ok(rt.block_on(c.register_pusher(&app_id, &pushkey, &device_name))?)
        })
    });
}

/// `static native int unregisterPushers(long client)`: removes this device's pushers from the
/// homeserver; returns how many.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_unregisterPushers<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> jint {
    run_ffi_safe(&mut env, |_| {
        let removed = with_client(client, |c, rt| Ok(rt.block_on(c.unregister_pushers())?))?;
        Ok(jint::try_from(removed).unwrap_or(jint::MAX))
    })
}

/// `static native String[][] pushers(long client)`: the account's pushers on the homeserver,
/// `{appId, pushkey, kind, url|null, format|null, registeredHere}`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_pushers<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let (pushers, here) = with_client(client, |c, rt| {
            Ok((rt.block_on(c.pushers())?, c.registered_pushers()?))
        })?;
        let rows: Vec<Vec<Option<&str>>> = pushers
            .iter()
            .map(|p| {
                let registered_here = here.iter().any(|(a, k)| *a == p.app_id && *k == p.pushkey);
                vec![
                    Some(p.app_id.as_str()),
                    Some(p.pushkey.as_str()),
                    Some(p.kind.as_str()),
                    p.data.url.as_deref(),
                    p.data.format.as_deref(),
                    Some(bool_cell(registered_here)),
                ]
            })
            .collect();
        convert::table(env, &rows)
    })
}

/// The wire name of a notification's kind (the core's serde names).
fn notification_kind(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Message => "message",
        NotificationKind::File => "file",
        NotificationKind::Invite => "invite",
        NotificationKind::Verification => "verification",
        NotificationKind::Other => "other",
    }
}

/// The issues a display name's parser found, one per line: `bidi_control`, …,
/// `lookalike_organisation:<the known organisation imitated>` (an organisation's name may
/// hold a comma, never a line break).
pub(crate) fn name_issues_cell(issues: &[tchap_secure_core::display_name::NameIssue]) -> String {
    use tchap_secure_core::display_name::NameIssue;
    issues
        .iter()
        .map(|issue| {
            let code = match issue {
                NameIssue::LookalikeOrganisation { of } => {
                    return format!("lookalike_organisation:{of}");
                }
                NameIssue::BidiControl => "bidi_control",
                NameIssue::Invisible => "invisible",
                NameIssue::Control => "control",
                NameIssue::NoOrganisation => "no_organisation",
                NameIssue::NestedBrackets => "nested_brackets",
                NameIssue::UnbalancedBrackets => "unbalanced_brackets",
                NameIssue::EmptyName => "empty_name",
                NameIssue::TooLong => "too_long",
                NameIssue::MixedScripts => "mixed_scripts",
                _ => "unknown",
            };
            code.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A notification row (16 columns, see `Native.notification`): `{roomId, eventId, sender,
/// senderName|null, roomName|null, kind, eventType, body|null, trust|null, senderDevice|null,
/// originServerTs, notify, highlight, sound|null, senderOrganisation|null, nameIssues}`. Also
/// the row of the sync thread's `onNotificationRow`.
pub(crate) fn notification_row(n: &Notification) -> Vec<Option<String>> {
    let Notification {
        room_id,
        event_id,
        sender,
        sender_name,
        sender_organisation,
        sender_name_issues,
        room_name,
        kind,
        event_type,
        body,
        trust,
        sender_device,
        origin_server_ts,
        notify,
        highlight,
        sound,
    } = n;
    vec![
        Some(room_id.clone()),
        Some(event_id.clone()),
        Some(sender.clone()),
        sender_name.clone(),
        room_name.clone(),
        Some(notification_kind(*kind).to_owned()),
        Some(event_type.clone()),
        body.clone(),
        trust.clone(),
        sender_device.clone(),
        // The server's claim: one beyond a Java long is shown as unknown (0), as the core
        // shows a missing one, rather than passed on to break the Java row parser.
        Some(
            jlong::try_from(*origin_server_ts)
                .unwrap_or_default()
                .to_string(),
        ),
        Some(bool_cell(*notify).to_owned()),
        Some(bool_cell(*highlight).to_owned()),
        sound.clone(),
        sender_organisation.clone(),
        Some(name_issues_cell(sender_name_issues)),
    ]
}

/// `static native String[] notification(long client, String roomId, String eventId, int
/// waitMs)`: the notification for the event a push announced, fetched and decrypted, waiting
/// up to `waitMs` (at most the core's `MAX_NOTIFICATION_WAIT`) for its room key; the row of
/// `notification_row`. Typed refusals keep the core's codes (`cannot_decrypt_yet`,
/// `notification_refused`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_notification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    event_id: JString<'local>,
    wait_ms: jint,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let event_id = convert::string_arg(env, &event_id, "eventId")?;
        let wait = Duration::from_millis(u64::from(non_negative(wait_ms, "waitMs")?));
        let notification = with_client(client, |c, rt| {
            Ok(rt.block_on(c.notification(&room_id, &event_id, wait))?)
        })?;
        convert::row(env, &notification_row(&notification))
    })
}

// --- interactive verification ----------------------------------------------------------------

/// Columns of a verification row before its three lists (see `Native.verification`).
pub(crate) const VERIFICATION_FIXED_COLUMNS: usize = 16;

/// A verification row (see `Native.verification`): 16 fixed columns, then the lists they
/// count — the methods the other side offered, the emoji as `symbol, description` pairs, what
/// the flow verified. Lists are trailing cells rather than joined strings, so no element can
/// be split or merged whatever it contains.
pub(crate) fn verification_row(v: &VerificationInfo) -> Vec<Option<String>> {
    let VerificationInfo {
        flow_id,
        user_id,
        device_id,
        room_id,
        we_requested,
        state,
        their_methods,
        emoji,
        decimals,
        cancel_code,
        cancel_reason,
        cancelled_by_us,
        verified,
        error,
    } = v;
    let decimal = |i: usize| decimals.map(|d| d[i].to_string());
    let emoji_cells = emoji.as_deref().unwrap_or_default();
    let mut row = Vec::with_capacity(
        VERIFICATION_FIXED_COLUMNS + their_methods.len() + 2 * emoji_cells.len() + verified.len(),
    );
    row.extend([
        Some(flow_id.clone()),
        Some(user_id.clone()),
        device_id.clone(),
        room_id.clone(),
        Some(bool_cell(*we_requested).to_owned()),
        Some(state.clone()),
        decimal(0),
        decimal(1),
        decimal(2),
        cancel_code.clone(),
        cancel_reason.clone(),
        cancelled_by_us.map(|b| bool_cell(b).to_owned()),
        error.clone(),
        Some(their_methods.len().to_string()),
        emoji.as_ref().map(|e| e.len().to_string()),
        Some(verified.len().to_string()),
    ]);
    row.extend(their_methods.iter().cloned().map(Some));
    for SasEmoji {
        symbol,
        description,
    } in emoji_cells
    {
        row.push(Some(symbol.clone()));
        row.push(Some(description.clone()));
    }
    row.extend(verified.iter().cloned().map(Some));
    row
}

/// Runs a verification action (`f`, on the flow `flow_id`) and returns the flow's row.
fn verification_action<'local>(
    env: &mut Env<'local>,
    client: jlong,
    flow_id: &JString<'local>,
    f: impl AsyncFnOnce(
        &mut tchap_secure_core::Client,
        &str,
    ) -> Result<VerificationInfo, tchap_secure_core::Error>,
) -> Result<StringArray<'local>, BridgeError> {
    let flow_id = convert::string_arg(env, flow_id, "flowId")?;
    let info = with_client(client, |c, rt| Ok(rt.block_on(f(c, &flow_id))?))?;
    convert::row(env, &verification_row(&info))
}

/// `static native String requestVerification(long client, String userId, String roomId)`:
/// asks `userId` (our own user: our other devices) to verify, in `roomId` or to-device when it
/// is null; returns the flow id.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_requestVerification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
    room_id: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        let room_id = convert::optional_string_arg(env, &room_id)?;
        let flow_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.request_verification(&user_id, room_id.as_deref()))?)
        })?;
        convert::java_string(env, &flow_id)
    })
}

/// `static native String requestDeviceVerification(long client, String userId, String
/// deviceId)`: asks that one device of `userId` to verify (to-device); returns the flow id.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_requestDeviceVerification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
    device_id: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        let device_id = convert::string_arg(env, &device_id, "deviceId")?;
        let flow_id = with_client(client, |c, rt| {
            Ok(rt.block_on(c.request_device_verification(&user_id, &device_id))?)
        })?;
        convert::java_string(env, &flow_id)
    })
}

/// `static native String[] acceptVerification(long client, String flowId)`: accepts a request
/// received; returns the flow's row.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_acceptVerification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| {
            c.accept_verification(id).await
        })
    })
}

/// `static native String[] startSas(long client, String flowId)`: starts SAS on a ready flow.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_startSas<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| c.start_sas(id).await)
    })
}

/// `static native String[] confirmSas(long client, String flowId)`: our user says the emoji
/// (or numbers) match.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_confirmSas<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| c.confirm_sas(id).await)
    })
}

/// `static native String[] sasMismatch(long client, String flowId)`: our user says they do
/// not match: cancelled (`m.mismatched_sas`), journaled.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_sasMismatch<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| {
            c.sas_mismatch(id).await
        })
    })
}

/// `static native String[] cancelVerification(long client, String flowId)`: cancels (or
/// declines) a flow.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_cancelVerification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| {
            c.cancel_verification(id).await
        })
    })
}

/// `static native byte[] showQr(long client, String flowId)`: the QR code's payload, for the
/// app to render, on a ready flow.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_showQr<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> JByteArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let flow_id = convert::string_arg(env, &flow_id, "flowId")?;
        let payload = with_client(client, |c, rt| Ok(rt.block_on(c.show_qr(&flow_id))?))?;
        convert::public_byte_array(env, &payload)
    })
}

/// `static native String[] scanQr(long client, String flowId, byte[] payload)`: the other
/// side's QR code, as scanned.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_scanQr<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
    payload: JByteArray<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let payload = convert::public_bytes(env, &payload, "payload")?;
        verification_action(env, client, &flow_id, async |c, id| {
            c.scan_qr(id, &payload).await
        })
    })
}

/// `static native String[] confirmQrScanned(long client, String flowId)`: our user confirms
/// the other side scanned our QR code.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_confirmQrScanned<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        verification_action(env, client, &flow_id, async |c, id| {
            c.confirm_qr_scanned(id).await
        })
    })
}

/// `static native String[] verification(long client, String flowId)`: the flow's row, or null
/// if unknown (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_verification<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    flow_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let flow_id = convert::string_arg(env, &flow_id, "flowId")?;
        match with_client(client, |c, _| Ok(c.verification(&flow_id)))? {
            Some(info) => convert::row(env, &verification_row(&info)),
            None => Ok(StringArray::default()),
        }
    })
}

/// `static native String[][] verifications(long client)`: every flow this client knows, one
/// verification row each (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_verifications<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let flows = with_client(client, |c, _| Ok(c.verifications()))?;
        let rows: Vec<_> = flows.iter().map(verification_row).collect();
        convert::table(env, &rows)
    })
}

// --- background sync -----------------------------------------------------------------------

/// `static native void startSync(long client, NativeListener listener, String mode)`: `mode`
/// is `SyncMode.wire` (`interactive` or `persistent`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_startSync<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    listener: JObject<'local>,
    mode: JString<'local>,
) {
    run_ffi_safe(&mut env, |env: &mut Env<'local>| {
        let mode = SyncMode::from_wire(&convert::string_arg(env, &mode, "mode")?)?;
        handle::borrow::<ClientHandle>(client)?.start_sync(env, &listener, mode)
    });
}

/// `static native void stopSync(long client)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_stopSync<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| {
        handle::borrow::<ClientHandle>(client)?.stop_sync();
        Ok(())
    });
}

/// `static native void networkAvailable(long client)`: ends the sync thread's back-off, if it
/// is backing off (no-op otherwise, and without a sync thread).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_networkAvailable<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| {
        handle::borrow::<ClientHandle>(client)?.network_available();
        Ok(())
    });
}

// --- wipe ------------------------------------------------------------------------------------

/// `static native void wipe(long client)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_wipe<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| handle::borrow::<ClientHandle>(client)?.wipe());
}

// --- test support ----------------------------------------------------------------------------

/// `static native void testPanic()`: panics inside the funnel. Debug builds only: a release
/// library does not export it.
#[cfg(debug_assertions)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_testPanic<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
) {
    run_ffi_safe(&mut env, |_| -> Result<(), BridgeError> {
        #[allow(
            clippy::panic,
            reason = "the point of testPanic: prove a panic becomes TchapSecureException(\"panic\")"
        )]
        {
            panic!("testPanic: deliberate panic inside the native library")
        }
    });
}

#[cfg(test)]
mod contract_tests {
    //! `Native.java` is the contract: every `native` method must be exported here with the
    //! matching JNI types (the JVM binds by name only, so a type mismatch would be undefined
    //! behaviour, not an error).

    use std::collections::BTreeMap;

    /// Java type → the Rust type used for it in this file.
    fn rust_type(java: &str) -> &'static str {
        match java {
            "long" => "jlong",
            "int" => "jint",
            "void" => "()",
            "String" => "JString",
            "byte[]" => "JByteArray",
            "String[]" => "StringArray",
            "String[][]" => "StringTable",
            "KeyBinder" | "NativeListener" => "JObject",
            other => panic!("no JNI mapping for Java type {other}"),
        }
    }

    /// name → (parameter types, return type), from `Native.java`.
    fn java_methods() -> BTreeMap<String, (Vec<String>, String)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../android/src/main/java/fr/gouv/tchap/secure/Native.java"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut methods = BTreeMap::new();
        // Declarations start a line (the class comment mentions "static native" too).
        let starts = text
            .match_indices("\n    static native ")
            .map(|(i, m)| i + m.len());
        for start in starts {
            let decl = &text[start..];
            let decl = &decl[..decl.find(';').unwrap()];
            let open = decl.find('(').unwrap();
            let (head, rest) = decl.split_at(open);
            let (ret, name) = head.trim().rsplit_once(' ').unwrap();
            let params = &rest[1..rest.find(')').unwrap()];
            let params = params
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| rust_type(p.rsplit_once(' ').unwrap().0.trim()).to_owned())
                .collect();
            methods.insert(name.to_owned(), (params, rust_type(ret.trim()).to_owned()));
        }
        methods
    }

    /// name → (parameter types after env and class, return type), from this file.
    fn rust_exports() -> BTreeMap<String, (Vec<String>, String)> {
        let text = concat!(include_str!("native.rs"), include_str!("account.rs"));
        let mut exports = BTreeMap::new();
        for decl in text
            .split("pub extern \"system\" fn Java_fr_gouv_tchap_secure_Native_")
            .skip(1)
        {
            let name = &decl[..decl.find('<').unwrap()];
            let open = decl.find('(').unwrap();
            let close = decl.find(')').unwrap();
            let params: Vec<String> = decl[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let ty = p.split_once(':').unwrap().1.trim();
                    ty.split('<').next().unwrap().to_owned()
                })
                .collect();
            assert_eq!(params[..2], ["EnvUnowned", "JClass"], "{name}");
            let after = decl[close + 1..].trim_start();
            let ret = match after.strip_prefix("->") {
                Some(r) => r.trim_start().split(['<', ' ']).next().unwrap().to_owned(),
                None => "()".to_owned(),
            };
            exports.insert(name.to_owned(), (params[2..].to_vec(), ret));
        }
        exports
    }

    #[test]
    fn every_native_method_is_exported_with_matching_types() {
        let java = java_methods();
        let rust = rust_exports();
        assert_eq!(java.len(), 72, "{java:?}");
        assert_eq!(java, rust);
    }
}

#[cfg(test)]
mod row_tests {
    //! The rows of the cross-signing methods and `devices`: column order and cell values, and
    //! the column count each Java class checks (`Rows.requireColumns`), so that a column added
    //! on one side only fails here rather than on a device.

    use tchap_secure_core::store::identity::IdentityRecord;
    use tchap_secure_core::store::{DeviceRecord, DeviceState};
    use tchap_secure_core::{CrossSigningStatus, IdentityState};

    use tchap_secure_core::client::verification::{SasEmoji, VerificationInfo};

    use tchap_secure_core::client::notification::{
        DEFAULT_NOTIFICATION_WAIT, MAX_NOTIFICATION_WAIT,
    };
    use tchap_secure_core::{Notification, NotificationKind};

    use tchap_secure_core::client::relations::Deletion;

    use tchap_secure_core::client::receipts::Unread;
    use tchap_secure_core::client::retention::Retention;
    use tchap_secure_core::config::ReadReceipts;

    use super::{
        DELETION_COLUMNS, MESSAGE_COLUMNS, READ_MARKERS_COLUMNS, RETENTION_COLUMNS, UNREAD_COLUMNS,
        VERIFICATION_FIXED_COLUMNS, deletion_row, device_row, identity_row, lifetime_arg,
        notification_row, retention_row, status_row, unread_row, verification_row,
    };

    /// The column count `class`.java requires of the `table` rows.
    fn java_columns(class: &str, table: &str) -> usize {
        let path = format!(
            "{}/../../android/src/main/java/fr/gouv/tchap/secure/{class}.java",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let needle = format!("\"{table}\");");
        let call = text
            .lines()
            .find(|l| l.contains("Rows.requireColumns(row, ") && l.contains(&needle))
            .unwrap_or_else(|| panic!("no requireColumns for {table} in {path}"));
        let after = call.split("Rows.requireColumns(row, ").nth(1).unwrap();
        after.split(',').next().unwrap().trim().parse().unwrap()
    }

    #[test]
    fn device_rows_carry_trust_and_cross_signing() {
        let device = DeviceRecord {
            user_id: "@a:x".into(),
            device_id: "DEV".into(),
            ed25519: "ED".into(),
            curve25519: "CURVE".into(),
            display_name: None,
            state: DeviceState::Tofu,
            deleted: false,
            cross_signed: true,
        };
        let row = device_row(&device, "identity_pinned");
        assert_eq!(
            row,
            [
                Some("DEV"),
                Some("ED"),
                Some("tofu"),
                Some("false"),
                None,
                Some("identity_pinned"),
                Some("true")
            ]
        );
        assert_eq!(row.len(), java_columns("Device", "devices"));
        let blocked = DeviceRecord {
            state: DeviceState::Blocked,
            deleted: true,
            cross_signed: false,
            display_name: Some("phone".into()),
            ..device
        };
        assert_eq!(
            device_row(&blocked, "blocked"),
            [
                Some("DEV"),
                Some("ED"),
                Some("blocked"),
                Some("true"),
                Some("phone"),
                Some("blocked"),
                Some("false")
            ]
        );
    }

    #[test]
    fn status_rows() {
        let full = CrossSigningStatus {
            master: Some("MASTER".into()),
            has_private_keys: true,
            device_signed: true,
            identity: Some(IdentityState::Verified),
        };
        let row = status_row(&full);
        assert_eq!(
            row,
            [Some("MASTER"), Some("true"), Some("true"), Some("verified")]
        );
        assert_eq!(
            row.len(),
            java_columns("CrossSigningStatus", "crossSigningStatus")
        );
        let none = CrossSigningStatus {
            master: None,
            has_private_keys: false,
            device_signed: false,
            identity: None,
        };
        assert_eq!(
            status_row(&none),
            [None, Some("false"), Some("false"), None]
        );
    }

    #[test]
    fn identity_rows_use_the_core_state_names() {
        for state in [
            IdentityState::Pinned,
            IdentityState::Verified,
            IdentityState::Changed,
        ] {
            let record = IdentityRecord {
                user_id: "@b:x".into(),
                master: "M".into(),
                self_signing: Some("SS".into()),
                state,
                changed_master: (state == IdentityState::Changed).then(|| "M2".into()),
            };
            let row = identity_row(&record);
            assert_eq!(row.len(), java_columns("Identity", "identity"));
            // The same names as the CLI's JSON (serde snake_case).
            let serde_name = serde_json::to_value(state).unwrap();
            assert_eq!(row[3], serde_name.as_str());
            assert_eq!(row[..3], [Some("@b:x"), Some("M"), Some("SS")]);
            assert_eq!(row[4], record.changed_master.as_deref());
        }
    }

    /// The source of `class`.java.
    fn java_source(class: &str) -> String {
        let path = format!(
            "{}/../../android/src/main/java/fr/gouv/tchap/secure/{class}.java",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn message_rows_have_the_java_width_and_relation_columns() {
        assert_eq!(MESSAGE_COLUMNS, java_columns("Message", "messages"));
        // `Message.java` reads the relation columns: replyTo nullable, edited strictly.
        let java = java_source("Message");
        assert!(
            java.contains("row[13]"),
            "Message.java: no nullable replyTo"
        );
        let edited = "Rows.bool(row, 14, \"messages\", \"edited\")";
        assert!(java.contains(edited), "Message.java: no {edited}");
    }

    #[test]
    fn deletion_rows_use_the_core_state_names() {
        assert_eq!(DELETION_COLUMNS, java_columns("Deletion", "redact"));
        let java = java_source("Deletion");
        let deletions = [
            Deletion::Sent {
                redaction_id: "$r".into(),
            },
            Deletion::Queued {
                local_id: "txn-1".into(),
            },
            Deletion::Failed {
                local_id: "txn-2".into(),
                reason: "forbidden".into(),
            },
            Deletion::NeverSent,
        ];
        let rows: Vec<_> = deletions.iter().map(deletion_row).collect();
        assert_eq!(
            rows,
            [
                [Some("sent"), Some("$r"), None],
                [Some("queued"), Some("txn-1"), None],
                [Some("failed"), Some("txn-2"), Some("forbidden")],
                [Some("never_sent"), None, None],
            ]
        );
        for (deletion, row) in deletions.iter().zip(&rows) {
            // The same names as the CLI's JSON (serde's tag), and a `Deletion.State` for each.
            let json = serde_json::to_value(deletion).unwrap();
            assert_eq!(row[0], json["state"].as_str());
            let wire = row[0].unwrap();
            assert!(
                java.contains(&format!("(\"{wire}\")")),
                "no Deletion.State for {wire}"
            );
        }
    }

    #[test]
    fn expired_messages_have_a_java_state() {
        let java = java_source("Message");
        assert!(
            java.contains("EXPIRED = \"expired\";"),
            "Message.java: no EXPIRED state"
        );
    }

    #[test]
    fn unread_rows_are_three_counts() {
        assert_eq!(UNREAD_COLUMNS, java_columns("Unread", "unread"));
        let row = unread_row(&Unread {
            messages: 999,
            notify: 2,
            highlight: 1,
        });
        assert_eq!(
            row,
            [Some("999".into()), Some("2".into()), Some("1".into())]
        );
        // `Unread.java` reads each as a count, in this order.
        let java = java_source("Unread");
        for (column, name) in ["messages", "notify", "highlight"].into_iter().enumerate() {
            let read = format!("Rows.count(row, {column}, \"unread\", \"{name}\")");
            assert!(java.contains(&read), "Unread.java: no {read}");
        }
    }

    #[test]
    fn read_marker_rows_and_receipt_names() {
        assert_eq!(
            READ_MARKERS_COLUMNS,
            java_columns("ReadMarkers", "readMarkers")
        );
        let java = java_source("ReadReceipts");
        for receipts in [
            ReadReceipts::Public,
            ReadReceipts::Private,
            ReadReceipts::Off,
        ] {
            let wire = receipts.as_str();
            assert!(
                java.contains(&format!("(\"{wire}\")")),
                "no ReadReceipts constant for {wire}"
            );
        }
    }

    #[test]
    fn retention_rows_are_nullable_milliseconds() {
        assert_eq!(RETENTION_COLUMNS, java_columns("Retention", "retention"));
        let set = Retention {
            room_ms: Some(30_000),
            ceiling_ms: Some(86_400_000),
            effective_ms: Some(30_000),
        };
        assert_eq!(
            retention_row(&set),
            [
                Some("30000".into()),
                Some("86400000".into()),
                Some("30000".into())
            ]
        );
        let none = Retention {
            room_ms: None,
            ceiling_ms: None,
            effective_ms: None,
        };
        assert_eq!(retention_row(&none), [None, None, None]);
        // `Retention.MIN_LIFETIME` is the floor the core applies.
        let floor = Retention {
            room_ms: Some(1),
            ceiling_ms: None,
            effective_ms: Some(30_000),
        };
        assert_eq!(retention_row(&floor)[2], Some("30000".into()));
        let java = java_source("Retention");
        assert!(java.contains("MIN_LIFETIME = Duration.ofSeconds(30);"));
    }

    #[test]
    fn a_lifetime_of_minus_one_removes_it_and_other_negatives_are_refused() {
        assert_eq!(lifetime_arg(-1).unwrap(), None);
        assert_eq!(lifetime_arg(0).unwrap(), Some(std::time::Duration::ZERO));
        assert_eq!(
            lifetime_arg(30_000).unwrap(),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            lifetime_arg(i64::MAX).unwrap(),
            Some(std::time::Duration::from_millis(i64::MAX.cast_unsigned()))
        );
        for wrong in [-2, i64::MIN] {
            assert_eq!(lifetime_arg(wrong).unwrap_err().code(), "invalid_argument");
        }
    }

    fn notification(kind: NotificationKind) -> Notification {
        Notification {
            room_id: "!r:x".into(),
            event_id: "$e".into(),
            sender: "@a:x".into(),
            sender_name: None,
            sender_organisation: None,
            sender_name_issues: Vec::new(),
            room_name: Some("Cabinet".into()),
            kind,
            event_type: "m.room.message".into(),
            body: Some("bonjour".into()),
            trust: Some("tofu".into()),
            sender_device: Some("DEV".into()),
            origin_server_ts: 1_700_000_000_000,
            notify: true,
            highlight: false,
            sound: Some("default".into()),
        }
    }

    /// The source of `Notification.java`.
    fn java_notification() -> String {
        java_source("Notification")
    }

    #[test]
    fn notification_rows_use_the_core_kind_names() {
        let java = java_notification();
        for kind in [
            NotificationKind::Message,
            NotificationKind::File,
            NotificationKind::Invite,
            NotificationKind::Verification,
            NotificationKind::Other,
        ] {
            let row = notification_row(&notification(kind));
            assert_eq!(row.len(), java_columns("Notification", "notification"));
            // The same names as the CLI's JSON (serde snake_case), and a `Notification.Kind`
            // constant for each.
            let serde_name = serde_json::to_value(kind).unwrap();
            assert_eq!(row[5].as_deref(), serde_name.as_str());
            let wire = row[5].clone().unwrap();
            assert!(
                java.contains(&format!("(\"{wire}\")")),
                "no Notification.Kind for {wire}"
            );
        }
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            notification_row(&notification(NotificationKind::Message)),
            [
                s("!r:x"),
                s("$e"),
                s("@a:x"),
                None,
                s("Cabinet"),
                s("message"),
                s("m.room.message"),
                s("bonjour"),
                s("tofu"),
                s("DEV"),
                s("1700000000000"),
                s("true"),
                s("false"),
                s("default"),
                None,
                s(""),
            ]
        );
        // The name parser's findings: one per line, a lookalike with what it imitates.
        let suspicious = Notification {
            sender_name: s("Jean Martin"),
            sender_organisation: s("Ministère des Аrmées"),
            sender_name_issues: vec![
                tchap_secure_core::display_name::NameIssue::BidiControl,
                tchap_secure_core::display_name::NameIssue::LookalikeOrganisation {
                    of: "Ministère des Armées, DGA".into(),
                },
            ],
            ..notification(NotificationKind::Message)
        };
        assert_eq!(
            notification_row(&suspicious)[14..],
            [
                s("Ministère des Аrmées"),
                s("bidi_control\nlookalike_organisation:Ministère des Armées, DGA")
            ]
        );
        assert!(
            java.contains("row[14], row[15]"),
            "Notification.java: no name cells"
        );
        // A timestamp beyond a Java long is shown as unknown, never passed on.
        let absurd = Notification {
            origin_server_ts: u64::MAX,
            ..notification(NotificationKind::Other)
        };
        assert_eq!(notification_row(&absurd)[10], s("0"));
        // The push rules' decision: booleans as `true|false`, no sound as null.
        let highlighted = Notification {
            notify: false,
            highlight: true,
            sound: None,
            ..notification(NotificationKind::Message)
        };
        assert_eq!(
            notification_row(&highlighted)[11..14],
            [s("false"), s("true"), None]
        );
        // `Notification.java` reads them as such: the booleans strictly, the sound nullable.
        for (column, name) in [(11, "notify"), (12, "highlight")] {
            let read = format!("Rows.bool(row, {column}, \"notification\", \"{name}\")");
            assert!(java.contains(&read), "Notification.java: no {read}");
        }
        assert!(
            java.contains("row[13]"),
            "Notification.java: no nullable sound"
        );
    }

    /// `Notification.DEFAULT_WAIT` and `MAX_WAIT` are the core's waits.
    #[test]
    fn java_notification_waits_are_the_core_ones() {
        let java = java_notification();
        let seconds = |name: &str| -> u64 {
            let after = java
                .split(&format!(
                    "static final Duration {name} = Duration.ofSeconds("
                ))
                .nth(1)
                .unwrap_or_else(|| panic!("{name} in Notification.java"));
            after[..after.find(')').unwrap()].trim().parse().unwrap()
        };
        assert_eq!(seconds("DEFAULT_WAIT"), DEFAULT_NOTIFICATION_WAIT.as_secs());
        assert_eq!(seconds("MAX_WAIT"), MAX_NOTIFICATION_WAIT.as_secs());
        assert_eq!(DEFAULT_NOTIFICATION_WAIT.subsec_nanos(), 0);
        assert_eq!(MAX_NOTIFICATION_WAIT.subsec_nanos(), 0);
    }

    /// `Verification.FIXED_COLUMNS` in `Verification.java`.
    fn java_verification_fixed_columns() -> usize {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../android/src/main/java/fr/gouv/tchap/secure/Verification.java"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let after = text
            .split("static final int FIXED_COLUMNS = ")
            .nth(1)
            .expect("FIXED_COLUMNS in Verification.java");
        after[..after.find(';').unwrap()].trim().parse().unwrap()
    }

    fn info() -> VerificationInfo {
        VerificationInfo {
            flow_id: "FLOW".into(),
            user_id: "@a:x".into(),
            device_id: None,
            room_id: None,
            we_requested: false,
            state: "received".into(),
            their_methods: vec!["m.sas.v1".into(), "m.qr_code.show.v1".into()],
            emoji: None,
            decimals: None,
            cancel_code: None,
            cancel_reason: None,
            cancelled_by_us: None,
            verified: vec![],
            error: None,
        }
    }

    #[test]
    fn verification_rows_fixed_columns_then_counted_lists() {
        assert_eq!(
            VERIFICATION_FIXED_COLUMNS,
            java_verification_fixed_columns()
        );
        let row = verification_row(&info());
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            row,
            [
                s("FLOW"),
                s("@a:x"),
                None,
                None,
                s("false"),
                s("received"),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                s("2"),
                None,
                s("0"),
                s("m.sas.v1"),
                s("m.qr_code.show.v1"),
            ]
        );

        // Emoji as pairs, decimals, what was verified; a list element may hold any character.
        let done = VerificationInfo {
            device_id: Some("DEV".into()),
            room_id: Some("!r:x".into()),
            we_requested: true,
            state: "done".into(),
            their_methods: vec![],
            emoji: Some(vec![
                SasEmoji {
                    symbol: "🐶".into(),
                    description: "Dog".into(),
                },
                SasEmoji {
                    symbol: "🔑".into(),
                    description: "Key, with a comma".into(),
                },
            ]),
            decimals: Some([1000, 2345, 9191]),
            verified: vec!["device @a:x DEV".into(), "master @a:x K\nEY".into()],
            ..info()
        };
        let row = verification_row(&done);
        assert_eq!(row.len(), VERIFICATION_FIXED_COLUMNS + 2 * 2 + 2);
        assert_eq!(
            row[2..7],
            [s("DEV"), s("!r:x"), s("true"), s("done"), s("1000")]
        );
        assert_eq!(row[7..9], [s("2345"), s("9191")]);
        assert_eq!(row[13..16], [s("0"), s("2"), s("2")]);
        assert_eq!(
            row[16..],
            [
                s("🐶"),
                s("Dog"),
                s("🔑"),
                s("Key, with a comma"),
                s("device @a:x DEV"),
                s("master @a:x K\nEY"),
            ]
        );

        let cancelled = VerificationInfo {
            state: "cancelled".into(),
            cancel_code: Some("m.mismatched_sas".into()),
            cancel_reason: Some("the emoji did not match".into()),
            cancelled_by_us: Some(true),
            error: Some("detail".into()),
            ..info()
        };
        let row = verification_row(&cancelled);
        assert_eq!(
            row[9..13],
            [
                s("m.mismatched_sas"),
                s("the emoji did not match"),
                s("true"),
                s("detail")
            ]
        );
    }
}
