//! The exported native methods of issue 19 (Tchap identity): the account's lock and renewal,
//! the member's own devices, the directory and the e-mail lookup, direct chats, and a room's
//! members with their parsed names. Same rules as `native.rs`: every body is
//! `funnel::run_ffi_safe`, no secret crosses as a `String`.

#![allow(
    unsafe_code,
    reason = "#[unsafe(no_mangle)] exports: the JVM resolves native methods by symbol name"
)]

use jni::EnvUnowned;
use jni::objects::{JByteArray, JClass, JObjectArray, JString};
use jni::sys::{jint, jlong};
use tchap_secure_core::client::account::OwnDevice;
use tchap_secure_core::client::directory::DirectoryUser;
use tchap_secure_core::display_name::ParsedName;
use tchap_secure_core::store::Member;

use crate::convert::{self, bool_cell};
use crate::error::BridgeError;
use crate::funnel::run_ffi_safe;
use crate::native::{name_issues_cell, with_client};

type StringArray<'local> = JObjectArray<'local, JString<'local>>;
type StringTable<'local> = JObjectArray<'local, StringArray<'local>>;

/// The three cells of a parsed name: `name, organisation|null, issues` (one per line).
fn name_cells(name: &ParsedName) -> [Option<String>; 3] {
    [
        Some(name.name.clone()),
        name.organisation.clone(),
        Some(name_issues_cell(&name.issues)),
    ]
}

/// A member row: `{userId, membership, displayName|null, name, organisation|null, issues}`.
pub(crate) fn member_row(m: &Member) -> Vec<Option<String>> {
    let [name, organisation, issues] = name_cells(&m.name);
    vec![
        Some(m.user_id.clone()),
        Some(m.membership.clone()),
        m.display_name.clone(),
        name,
        organisation,
        issues,
    ]
}

/// A directory row: `{userId, displayName|null, name, organisation|null, issues}`.
pub(crate) fn directory_row(u: &DirectoryUser) -> Vec<Option<String>> {
    let [name, organisation, issues] = name_cells(&u.name);
    vec![
        Some(u.user_id.clone()),
        u.display_name.clone(),
        name,
        organisation,
        issues,
    ]
}

/// An own-device row: `{deviceId, displayName|null, lastSeenTs|null, lastSeenIp|null, current}`.
pub(crate) fn own_device_row(d: &OwnDevice) -> Vec<Option<String>> {
    vec![
        Some(d.device_id.clone()),
        d.display_name.clone(),
        d.last_seen_ts
            .filter(|ts| *ts >= 0)
            .map(|ts| ts.to_string()),
        d.last_seen_ip.clone(),
        Some(bool_cell(d.current).to_owned()),
    ]
}

// --- account lifecycle -------------------------------------------------------------------

/// `static native String accountLock(long client)`: `expired`, `revoked`, or null when the
/// account is not locked (no network).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_accountLock<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let lock = with_client(client, |c, _| Ok(c.account_lock()))?;
        convert::optional_java_string(env, lock.map(|l| l.as_str()))
    })
}

/// `static native void requestRenewal(long client)`: asks the homeserver for the renewal
/// e-mail of an expired account.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_requestRenewal<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) {
    run_ffi_safe(&mut env, |_| {
        with_client(client, |c, rt| Ok(rt.block_on(c.request_renewal())?))
    });
}

/// `static native String resume(long client)`: `true` if the client is (now) unlocked, `false`
/// if the account is still expired or revoked.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_resume<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let resumed = with_client(client, |c, rt| Ok(rt.block_on(c.resume())?))?;
        convert::java_string(env, bool_cell(resumed))
    })
}

/// `static native String[][] ownDevices(long client)`: own-device rows, the most recently
/// seen first.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_ownDevices<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let devices = with_client(client, |c, rt| Ok(rt.block_on(c.own_devices())?))?;
        let rows: Vec<_> = devices.iter().map(own_device_row).collect();
        convert::table(env, &rows)
    })
}

/// `static native void logOutDevices(long client, String[] deviceIds, byte[] password)`: logs
/// the member's other devices out; `password` may be null (then `password_required` if the
/// server asks); a given array is zeroed before the network call.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_logOutDevices<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    device_ids: StringArray<'local>,
    password: JByteArray<'local>,
) {
    run_ffi_safe(&mut env, |env| {
        let password = if password.is_null() {
            None
        } else {
            Some(convert::take_secret(env, &password, "password")?)
        };
        let ids = convert::string_array_arg(env, &device_ids, "deviceIds")?;
        with_client(client, |c, rt| {
            Ok(rt.block_on(c.log_out_devices(&ids, password.as_ref()))?)
        })?;
        drop(password);
        Ok(())
    });
}

// --- directory ----------------------------------------------------------------------------

/// `static native String[][] searchDirectory(long client, String term, int limit)`: row 0 is
/// `{limited}` (`true|false`), then directory rows.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_searchDirectory<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    term: JString<'local>,
    limit: jint,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let term = convert::string_arg(env, &term, "term")?;
        let limit = u32::try_from(limit).map_err(|_| BridgeError::InvalidArgument {
            what: "limit",
            why: "negative",
        })?;
        let found = with_client(client, |c, rt| {
            Ok(rt.block_on(c.search_directory(&term, limit))?)
        })?;
        let mut rows = vec![vec![Some(bool_cell(found.limited).to_owned())]];
        rows.extend(found.users.iter().map(directory_row));
        convert::table(env, &rows)
    })
}

/// `static native String lookupEmail(long client, String address)`: the user the address
/// belongs to (hashed lookup on the identity server), or null.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_lookupEmail<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    address: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let address = convert::string_arg(env, &address, "address")?;
        let user = with_client(client, |c, rt| Ok(rt.block_on(c.lookup_email(&address))?))?;
        convert::optional_java_string(env, user.as_deref())
    })
}

/// `static native String inviteByEmail(long client, String roomId, String address)`: invites
/// the user the address belongs to and returns their id; `unknown_address` if none.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_inviteByEmail<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
    address: JString<'local>,
) -> JString<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let address = convert::string_arg(env, &address, "address")?;
        let user = with_client(client, |c, rt| {
            Ok(rt.block_on(c.invite_by_email(&room_id, &address))?)
        })?;
        convert::java_string(env, &user)
    })
}

/// `static native String[] openDirectRoom(long client, String userId)`: `{roomId, created}`:
/// the existing direct chat with the user, or a new one (`created` `true`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_openDirectRoom<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    user_id: JString<'local>,
) -> StringArray<'local> {
    run_ffi_safe(&mut env, |env| {
        let user_id = convert::string_arg(env, &user_id, "userId")?;
        let (room_id, created) = with_client(client, |c, rt| {
            Ok(rt.block_on(c.open_direct_room(&user_id))?)
        })?;
        convert::string_array(env, &[room_id.as_str(), bool_cell(created)])
    })
}

/// `static native String[][] members(long client, String roomId)`: member rows, by user id.
#[unsafe(no_mangle)]
pub extern "system" fn Java_fr_gouv_tchap_secure_Native_members<'local>(
    mut env: EnvUnowned<'local>,
    _class: JClass<'local>,
    client: jlong,
    room_id: JString<'local>,
) -> StringTable<'local> {
    run_ffi_safe(&mut env, |env| {
        let room_id = convert::string_arg(env, &room_id, "roomId")?;
        let members = with_client(client, |c, _| Ok(c.members(&room_id)?))?;
        let rows: Vec<_> = members.iter().map(member_row).collect();
        convert::table(env, &rows)
    })
}
