//! Attachments at the client level (issue 8): a file is sent as a Matrix `EncryptedFile` in an
//! `m.file` / `m.image` message of an encrypted room, and a received one is only ever fetched
//! through the content scanner, verified against its SHA-256 and decrypted locally.
//!
//! - **Send** ([`Client::send_file`]): the file is encrypted while it is uploaded (AES-256-CTR,
//!   fresh key and IV, SHA-256 of the ciphertext; `media::encrypt_attachment` on a blocking
//!   thread feeding the request body through a bounded channel): no ciphertext or plaintext
//!   copy is written anywhere, memory stays at a few 64 KiB chunks. The upload carries no file
//!   name and `application/octet-stream` (the server learns the size, nothing else). Size cap:
//!   the configuration's `max_attachment_bytes`, lowered by the server's `m.upload.size`.
//! - **Receive** (`attachment_column`, called by the sync): the `file` of a decrypted `m.file` /
//!   `m.image` / `m.video` / `m.audio` is validated strictly and kept with the event in the
//!   SQLCipher database; a media message with a clear `url` (an unencrypted attachment) is
//!   refused.
//! - **Download** ([`Client::download_file`]): `media::download_through_scanner` with the
//!   client's scanner key cache, the ciphertext streamed into an unnamed temporary file of the
//!   data directory (`O_TMPFILE`: no name, gone on close or crash; it holds ciphertext only),
//!   then hashed and decrypted into the caller's writer. An infected file is a typed error
//!   and a security event; nothing reaches the writer. The library keeps no plaintext copy:
//!   where the bytes go is the caller's decision.

use std::io::{Read, Write};

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Client;
use crate::api::ApiError;
use crate::error::Error;
use crate::media::scanner::{ScannerError, download_through_scanner};
use crate::media::{
    AttachmentError, BUFFER_LEN, EncryptedFile, MxcUri, encrypt_attachment, sanitize_file_name,
};
use crate::net::{Request, StreamBody};

/// The `msgtype`s whose `file` is an attachment we handle.
pub const ATTACHMENT_MSGTYPES: &[&str] = &["m.file", "m.image", "m.video", "m.audio"];

/// Chunks in flight between the encrypting thread and the upload (× 64 KiB).
const UPLOAD_CHANNEL_CHUNKS: usize = 4;

/// Longest media type kept (RFC 6838: 127 characters per part).
const MAX_MIMETYPE_LEN: usize = 255;

/// A file to send: its name (sanitised before use) and media type (`None`, or one that is not
/// a well-formed `type/subtype`, is sent as `application/octet-stream`).
#[derive(Debug, Clone, Copy)]
pub struct OutgoingFile<'a> {
    /// The name shown to the recipients.
    pub name: &'a str,
    /// The media type, e.g. `application/pdf`; `image/*` sends an `m.image`.
    pub mimetype: Option<&'a str>,
    /// Exact length of the file, in bytes.
    pub len: u64,
}

/// A media type we accept to show and forward: `type/subtype` of RFC 6838 restricted-name
/// characters, no parameters.
fn well_formed_mimetype(mimetype: &str) -> bool {
    let valid_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    mimetype.len() <= MAX_MIMETYPE_LEN
        && mimetype
            .split_once('/')
            .is_some_and(|(t, s)| valid_part(t) && valid_part(s))
}

/// What the sync keeps of a decrypted room message's attachment: `Ok(None)` if the message has
/// none, `Ok(Some(column))` with the JSON for the timeline's `attachment` column, or
/// `Err(reason)` for a media message we refuse (a clear `url`, a malformed `file`).
pub(crate) fn attachment_column(content: &Value) -> Result<Option<String>, &'static str> {
    let Some(msgtype) = content.get("msgtype").and_then(Value::as_str) else {
        return Ok(None);
    };
    let Some(msgtype) = ATTACHMENT_MSGTYPES.iter().find(|t| **t == msgtype) else {
        return Ok(None);
    };
    let Some(file) = content.get("file") else {
        return Err(if content.get("url").is_some() {
            "unencrypted attachment refused: a media message with a clear url"
        } else {
            "media message without a file"
        });
    };
    let validated = EncryptedFile::from_json(file.clone())
        .and_then(|f| f.validate())
        .map_err(|e| match e {
            AttachmentError::Malformed { what } => what,
            _ => "malformed encrypted file",
        })?;
    let name = content
        .get("filename")
        .and_then(Value::as_str)
        .or_else(|| content.get("body").and_then(Value::as_str))
        .unwrap_or_default();
    let info = content.get("info");
    let mimetype = info
        .and_then(|i| i.get("mimetype"))
        .and_then(Value::as_str)
        .filter(|m| well_formed_mimetype(m));
    let size = info.and_then(|i| i.get("size")).and_then(Value::as_u64);
    Ok(Some(
        json!({
            "msgtype": msgtype,
            "name": sanitize_file_name(name),
            "mimetype": mimetype,
            "size": size,
            "file": validated.to_encrypted_file(),
        })
        .to_string(),
    ))
}

/// The `file` part of a stored attachment column.
#[derive(Deserialize)]
struct StoredFile {
    file: EncryptedFile,
}

/// Feeds the upload's request body: each write is one chunk on the bounded channel (the
/// encrypting thread blocks while the network is slower).
struct ChannelWriter {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunks
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Deserialize)]
struct UploadResponse {
    content_uri: String,
}

#[derive(Deserialize)]
struct MediaConfig {
    #[serde(rename = "m.upload.size", default)]
    upload_size: Option<u64>,
}

impl Client {
    /// The server's upload limit (`m.upload.size` of the authenticated media configuration,
    /// else of the legacy one), if it announces one.
    pub async fn server_upload_limit(&self) -> Result<Option<u64>, Error> {
        let v1: Result<MediaConfig, Error> = self
            .authed(
                Method::GET,
                "/media/config",
                &["_matrix", "client", "v1", "media", "config"],
                None,
            )
            .await;
        let config = match v1 {
            Err(Error::Api(
                ApiError::Matrix { status: 404, .. } | ApiError::Http { status: 404 },
            )) => {
                self.authed(
                    Method::GET,
                    "/media/config",
                    &["_matrix", "media", "v3", "config"],
                    None,
                )
                .await?
            }
            other => other?,
        };
        Ok(config.upload_size)
    }

    /// The largest attachment this client sends now: the configuration's cap, lowered by the
    /// server's `m.upload.size`.
    pub async fn attachment_limit(&self) -> Result<u64, Error> {
        let configured = self.config.max_attachment_bytes();
        Ok(match self.server_upload_limit().await? {
            Some(server) => configured.min(server),
            None => configured,
        })
    }

    /// Encrypts `source` (exactly `file.len` bytes) while uploading it, then sends an
    /// `m.file` (or `m.image` for an `image/*` type) in the encrypted room `room_id`; returns
    /// the event id.
    ///
    /// Refused before anything is uploaded: a room that is not encrypted or not joined, a file
    /// over [`Client::attachment_limit`] ([`AttachmentError::TooLarge`]). A source that yields
    /// more or fewer bytes than announced fails the upload, and nothing is sent in the room.
    pub async fn send_file<R: Read + Send + 'static>(
        &mut self,
        room_id: &str,
        source: R,
        file: OutgoingFile<'_>,
    ) -> Result<String, Error> {
        self.check_sendable_room(room_id)?;
        let limit = self.attachment_limit().await?;
        if file.len > limit {
            return Err(AttachmentError::TooLarge { limit }.into());
        }
        let name = sanitize_file_name(file.name);
        let mimetype = file
            .mimetype
            .filter(|m| well_formed_mimetype(m))
            .unwrap_or("application/octet-stream");
        let msgtype = if mimetype.starts_with("image/") {
            "m.image"
        } else {
            "m.file"
        };

        let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_CHANNEL_CHUNKS);
        let len = file.len;
        let encryption = tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::with_capacity(BUFFER_LEN, source);
            encrypt_attachment(reader, ChannelWriter { chunks: tx }, len)
        });
        let token = self.token()?;
        let mut request = Request::new(Method::POST, vec!["_matrix", "media", "v3", "upload"]);
        request.access_token = Some(token);
        request.timeout = Some(crate::media::scanner::DOWNLOAD_TIMEOUT);
        request.max_body_bytes = Some(64 * 1024);
        request.stream = Some(StreamBody {
            content_type: "application/octet-stream",
            len,
            chunks: rx,
        });
        let upload = self.transport.send(request).await;
        let encrypted = encryption.await.map_err(|e| Error::InvalidArgument {
            what: format!("the encrypting task failed: {e}"),
        })?;
        // The encryption's own failure (a source shorter or longer than announced, a read
        // error) explains a failed upload better than the upload's error does.
        let encrypted = encrypted?;
        if encrypted.size() != len {
            return Err(AttachmentError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than announced",
            ))
            .into());
        }
        let upload: UploadResponse = crate::api::decode("/upload", &upload?)?;
        let url = MxcUri::parse(&upload.content_uri).map_err(Error::Attachment)?;
        let encrypted_file = encrypted.into_encrypted_file(&url);
        tracing::info!(room_id, size = len, msgtype, "attachment uploaded");
        let content = json!({
            "msgtype": msgtype,
            "body": name,
            "filename": name,
            "info": { "size": len, "mimetype": mimetype },
            "file": encrypted_file,
        });
        self.send_room_message(room_id, content).await
    }

    /// Downloads the attachment of event `event_id` of `room_id` through the content scanner,
    /// verifies it against its SHA-256 and decrypts it into `sink`; returns its length.
    ///
    /// Nothing is written to `sink` unless the scanner found the file clean and the whole
    /// ciphertext matched its hash; on an error after writing started (the sink failed), the
    /// caller discards what it received. `ScannerError::InfectedFile` and
    /// `ScannerError::UnpinnedKey` (the scanner served a key the configuration does not pin:
    /// nothing was encrypted to it) are also recorded in the security journal. There is no other
    /// way to a received file: no direct download.
    pub async fn download_file<W: Write>(
        &mut self,
        room_id: &str,
        event_id: &str,
        sink: W,
    ) -> Result<u64, Error> {
        let (sender, column) =
            crate::store::timeline::timeline_attachment(self.store.conn(), room_id, event_id)?
                .ok_or_else(|| Error::InvalidArgument {
                    what: format!("no decrypted attachment for event {event_id} in {room_id}"),
                })?;
        let stored: StoredFile = serde_json::from_str(&column).map_err(|_| {
            Error::Attachment(AttachmentError::Malformed {
                what: "stored attachment",
            })
        })?;
        drop(column);
        let file = stored.file.validate()?;
        drop(stored);
        let mut spool = self.spool_file()?;
        let result = download_through_scanner(
            &self.transport,
            &self.scanner_keys,
            &file,
            self.config.max_attachment_bytes(),
            &mut spool,
            sink,
        )
        .await;
        match result {
            Ok(n) => {
                tracing::info!(
                    room_id,
                    size = n,
                    "attachment downloaded through the scanner"
                );
                Ok(n)
            }
            Err(e) => {
                if let ScannerError::UnpinnedKey { served } = &e {
                    let detail = format!(
                        "event {event_id}: the content scanner served the public key {served}, \
                         which is not one of the configured content_scanner_keys; nothing was sent to it"
                    );
                    self.store.transaction(|tx| {
                        crate::store::rooms::record_security_event(
                            tx,
                            "scanner_key_unpinned",
                            Some(room_id),
                            None,
                            &detail,
                        )
                    })?;
                }
                if let ScannerError::InfectedFile { info } = &e {
                    tracing::warn!(room_id, "the content scanner refused an attachment");
                    let detail = format!(
                        "event {event_id}: refused by the content scanner ({})",
                        info.unwrap_or("no known reason")
                    );
                    self.store.transaction(|tx| {
                        crate::store::rooms::record_security_event(
                            tx,
                            "infected_file",
                            Some(room_id),
                            Some(&sender),
                            &detail,
                        )
                    })?;
                }
                Err(e.into())
            }
        }
    }

    /// An unnamed, private temporary file in the data directory, for a downloaded ciphertext.
    fn spool_file(&self) -> Result<std::fs::File, Error> {
        let dir = self.data_dir.join(SPOOL_DIR);
        super::prepare_data_dir(&dir)?;
        tempfile::tempfile_in(&dir).map_err(Error::DataDir)
    }
}

/// Sub-directory of the data directory for download spool files (ciphertext only).
pub const SPOOL_DIR: &str = "spool";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_vectors::sdk_file_json;

    #[test]
    fn media_types_are_checked() {
        for ok in [
            "application/pdf",
            "image/png",
            "application/vnd.oasis.opendocument.text",
        ] {
            assert!(well_formed_mimetype(ok), "{ok}");
        }
        for bad in [
            "",
            "pdf",
            "/pdf",
            "application/",
            "text/html; charset=utf-8",
            "a/b/c",
            "text/\u{202e}lmth",
            "image/png\n",
        ] {
            assert!(!well_formed_mimetype(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_file_message_keeps_a_validated_file_and_a_sanitised_name() {
        let content = json!({
            "msgtype": "m.file",
            "body": "ignored when filename is set",
            "filename": "../../etc/passwd",
            "info": { "size": 12, "mimetype": "text/html; x" },
            "file": sdk_file_json(),
        });
        let column = attachment_column(&content).unwrap().unwrap();
        let stored: Value = serde_json::from_str(&column).unwrap();
        assert_eq!(stored["msgtype"], "m.file");
        assert_eq!(stored["name"], "passwd");
        assert_eq!(stored["mimetype"], Value::Null);
        assert_eq!(stored["size"], 12);
        let file = EncryptedFile::from_json(stored["file"].clone()).unwrap();
        assert!(file.validate().is_ok());
        let summary = crate::store::AttachmentSummary::from_stored(&column).unwrap();
        assert_eq!(summary.name, "passwd");
    }

    #[test]
    fn clear_and_malformed_attachments_are_refused() {
        let clear = json!({ "msgtype": "m.image", "body": "x.png", "url": "mxc://s/abc" });
        assert_eq!(
            attachment_column(&clear),
            Err("unencrypted attachment refused: a media message with a clear url")
        );
        let mut bad_key = sdk_file_json();
        bad_key["key"]["k"] = json!("AAAA");
        let malformed = json!({ "msgtype": "m.file", "body": "x", "file": bad_key });
        assert!(attachment_column(&malformed).is_err());
        let no_file = json!({ "msgtype": "m.audio", "body": "x" });
        assert_eq!(
            attachment_column(&no_file),
            Err("media message without a file")
        );
        // Not an attachment: text, notices, unknown types.
        for content in [
            json!({ "msgtype": "m.text", "body": "hi", "url": "mxc://s/abc" }),
            json!({ "body": "no msgtype" }),
            json!({ "msgtype": "m.location", "body": "x" }),
        ] {
            assert_eq!(attachment_column(&content), Ok(None));
        }
    }
}
