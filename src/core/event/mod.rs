//! Synced events: the persistent layer every client of a store shares.
//!
//! Names and payloads follow livestore-filesync (`v1.FileCreated`, `v1.FileUpdated`,
//! `v1.FileDeleted`), plus the original file name, MIME type and size, which it loses, and two
//! optional fields of updates: `expectedContentHash`, that makes an update conditional, and
//! `previousContentHash`, the content the edit replaced as its author saw it, by which every
//! client can tell a concurrent overwrite (see [`FileUpdated`]).
//!
//! Everything that crosses a boundary (server replies, stored rows, JS input) is decoded from the
//! wire shapes here and validated into typed values; bad input is a [`DecodeError`], never a
//! panic.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::error::DecodeError;
use super::ids::{truncate, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId};

/// Largest `metadataJson` accepted, in bytes.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Largest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Largest file size accepted: JavaScript's largest safe integer.
pub const MAX_SIZE: u64 = (1 << 53) - 1;

/// What the user gave us about the file; kept so `readFile` returns the same name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Original file name (`photo.jpg`).
    pub name: String,
    /// MIME type; empty when the browser did not know it.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// How an update treats the app's metadata: omitted keeps it, `null` clears it, a string sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataPatch {
    Keep,
    Clear,
    Set(String),
}

/// A new file whose bytes are already stored locally by the client that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCreated {
    pub id: FileId,
    pub path: String,
    pub content_hash: ContentHash,
    pub info: FileInfo,
    pub metadata_json: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A change of a file: new content, a new path or metadata, or a remote key once uploaded.
///
/// With `expected_content_hash` set the update is conditional: it applies only if the file's
/// content hash, at that point of the total order, is still the expected one. Upload completions
/// use it, so a completion for content that a concurrent edit replaced changes nothing on any
/// client: the old remote key never lands on new content (livestore-filesync's bug 1, fixed
/// across devices, not only within one tab). Edits leave it unset and resolve by last writer in
/// the server's order, the same on every client.
///
/// `previous_content_hash` is the content an app edit replaced in its author's view. When the
/// update lands on a row whose content is another one, the edit was made without knowledge of
/// that content: a concurrent overwrite, whose loser is told (see
/// [`Applied::concurrent`](super::table::Applied::concurrent)). It never changes how the event
/// folds. Upload completions leave it unset (they do not change the content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpdated {
    pub id: FileId,
    pub path: String,
    /// `None` on the wire is `""`: the content is not uploaded yet.
    pub remote_key: Option<RemoteKey>,
    pub content_hash: ContentHash,
    pub info: FileInfo,
    pub metadata: MetadataPatch,
    pub updated_at: Millis,
    pub expected_content_hash: Option<ContentHash>,
    pub previous_content_hash: Option<ContentHash>,
}

/// A soft delete: the row stays as a tombstone so late updates cannot revive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDeleted {
    pub id: FileId,
    pub deleted_at: Millis,
}

/// One synced event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileEvent {
    Created(FileCreated),
    Updated(FileUpdated),
    Deleted(FileDeleted),
}

impl FileEvent {
    /// The file the event is about.
    pub fn file_id(&self) -> &FileId {
        match self {
            FileEvent::Created(e) => &e.id,
            FileEvent::Updated(e) => &e.id,
            FileEvent::Deleted(e) => &e.id,
        }
    }

    /// The wire name (`v1.FileCreated`...).
    pub fn name(&self) -> &'static str {
        match self {
            FileEvent::Created(_) => "v1.FileCreated",
            FileEvent::Updated(_) => "v1.FileUpdated",
            FileEvent::Deleted(_) => "v1.FileDeleted",
        }
    }

    /// Checks what the wire decoding cannot: a remote key must be this store's key for the
    /// event's own content, so no row can ever point at other bytes.
    pub fn validate_for_store(&self, store: &StoreId) -> Result<(), DecodeError> {
        if let FileEvent::Updated(u) = self {
            if let Some(key) = &u.remote_key {
                if *key != RemoteKey::for_content(store, &u.content_hash) {
                    return Err(DecodeError::InvalidRemoteKey {
                        value: truncate(key.as_str()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The wire shape.
    pub fn to_wire(&self) -> WireEvent {
        let args = match self {
            FileEvent::Created(e) => raw(&CreatedOut {
                content_hash: e.content_hash.to_hex(),
                created_at: e.created_at.0,
                id: e.id.as_str(),
                metadata_json: e.metadata_json.as_deref(),
                mime_type: &e.info.mime_type,
                name: &e.info.name,
                path: &e.path,
                size: e.info.size,
                updated_at: e.updated_at.0,
            }),
            FileEvent::Updated(e) => raw(&UpdatedOut {
                content_hash: e.content_hash.to_hex(),
                expected_content_hash: e.expected_content_hash.map(|h| h.to_hex()),
                id: e.id.as_str(),
                metadata_json: match &e.metadata {
                    MetadataPatch::Keep => None,
                    MetadataPatch::Clear => Some(None),
                    MetadataPatch::Set(m) => Some(Some(m)),
                },
                mime_type: &e.info.mime_type,
                name: &e.info.name,
                path: &e.path,
                previous_content_hash: e.previous_content_hash.map(|h| h.to_hex()),
                remote_key: e.remote_key.as_ref().map_or("", RemoteKey::as_str),
                size: e.info.size,
                updated_at: e.updated_at.0,
            }),
            FileEvent::Deleted(e) => raw(&DeletedOut {
                deleted_at: e.deleted_at.0,
                id: e.id.as_str(),
            }),
        };
        WireEvent {
            name: self.name().to_string(),
            args,
        }
    }

    /// Decodes and validates a wire event.
    pub fn from_wire(w: &WireEvent) -> Result<FileEvent, DecodeError> {
        FileEvent::from_parts(&w.name, &w.args)
    }

    /// Decodes and validates an event from its name and its arguments' JSON.
    pub fn from_parts(name: &str, args: &RawValue) -> Result<FileEvent, DecodeError> {
        fn decode<'a, T: Deserialize<'a>>(args: &'a RawValue) -> Result<T, DecodeError> {
            serde_json::from_str(args.get()).map_err(|e| DecodeError::Malformed {
                message: e.to_string(),
            })
        }
        match name {
            "v1.FileCreated" => {
                let a: CreatedArgs = decode(args)?;
                Ok(FileEvent::Created(FileCreated {
                    id: FileId::new(a.id)?,
                    path: check_path(a.path)?,
                    content_hash: ContentHash::parse(&a.content_hash)?,
                    info: check_info(a.name, a.mime_type, a.size)?,
                    metadata_json: a.metadata_json.map(check_metadata).transpose()?,
                    created_at: Millis(a.created_at),
                    updated_at: Millis(a.updated_at),
                }))
            }
            "v1.FileUpdated" => {
                let a: UpdatedArgs = decode(args)?;
                let content_hash = ContentHash::parse(&a.content_hash)?;
                Ok(FileEvent::Updated(FileUpdated {
                    id: FileId::new(a.id)?,
                    path: check_path(a.path)?,
                    remote_key: check_remote_key(&a.remote_key, &content_hash)?,
                    content_hash,
                    info: check_info(a.name, a.mime_type, a.size)?,
                    metadata: match a.metadata_json {
                        None => MetadataPatch::Keep,
                        Some(None) => MetadataPatch::Clear,
                        Some(Some(s)) => MetadataPatch::Set(check_metadata(s)?),
                    },
                    updated_at: Millis(a.updated_at),
                    expected_content_hash: a
                        .expected_content_hash
                        .as_deref()
                        .map(ContentHash::parse)
                        .transpose()?,
                    previous_content_hash: a
                        .previous_content_hash
                        .as_deref()
                        .map(ContentHash::parse)
                        .transpose()?,
                }))
            }
            "v1.FileDeleted" => {
                let a: DeletedArgs = decode(args)?;
                Ok(FileEvent::Deleted(FileDeleted {
                    id: FileId::new(a.id)?,
                    deleted_at: Millis(a.deleted_at),
                }))
            }
            other => Err(DecodeError::UnknownEvent {
                name: truncate(other),
            }),
        }
    }

    /// Decodes one event from JSON text.
    pub fn decode_json(text: &str) -> Result<FileEvent, DecodeError> {
        let w: WireEvent = serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
            message: e.to_string(),
        })?;
        FileEvent::from_wire(&w)
    }
}

/// `{name, args}`: an event as it travels and is stored. `args` stays JSON text until
/// [`FileEvent::from_wire`] decodes and validates it into typed fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEvent {
    pub name: String,
    pub args: Box<RawValue>,
}

impl PartialEq for WireEvent {
    fn eq(&self, other: &WireEvent) -> bool {
        self.name == other.name && self.args.get() == other.args.get()
    }
}

/// A value's JSON. The argument shapes below are strings and integers: encoding cannot fail.
fn raw<T: Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

// The encoded shapes, fields in alphabetical order (as the stored text has always been).

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedOut<'a> {
    content_hash: String,
    created_at: u64,
    id: &'a str,
    metadata_json: Option<&'a str>,
    mime_type: &'a str,
    name: &'a str,
    path: &'a str,
    size: u64,
    updated_at: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdatedOut<'a> {
    content_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_content_hash: Option<String>,
    id: &'a str,
    /// Absent: keep; `null`: clear; text: set.
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_json: Option<Option<&'a str>>,
    mime_type: &'a str,
    name: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_content_hash: Option<String>,
    remote_key: &'a str,
    size: u64,
    updated_at: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedOut<'a> {
    deleted_at: u64,
    id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedArgs {
    id: String,
    path: String,
    content_hash: String,
    name: String,
    #[serde(default)]
    mime_type: String,
    size: u64,
    #[serde(default)]
    metadata_json: Option<String>,
    created_at: u64,
    updated_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatedArgs {
    id: String,
    path: String,
    #[serde(default)]
    remote_key: String,
    content_hash: String,
    name: String,
    #[serde(default)]
    mime_type: String,
    size: u64,
    #[serde(default, deserialize_with = "present")]
    metadata_json: Option<Option<String>>,
    updated_at: u64,
    #[serde(default)]
    expected_content_hash: Option<String>,
    #[serde(default)]
    previous_content_hash: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedArgs {
    id: String,
    deleted_at: u64,
}

/// A path must stay inside its directory wherever it is used as one: relative, no empty, `.` or
/// `..` segments, no backslashes or control characters.
pub fn check_path(path: String) -> Result<String, DecodeError> {
    let unsafe_path = path.is_empty()
        || path.len() > MAX_PATH_BYTES
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(char::is_control)
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if unsafe_path {
        return Err(DecodeError::UnsafePath {
            value: truncate(&path),
        });
    }
    Ok(path)
}

pub(crate) fn check_info(
    name: String,
    mime_type: String,
    size: u64,
) -> Result<FileInfo, DecodeError> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(DecodeError::InvalidField {
            field: "name",
            reason: format!(
                "{:?} must be 1-255 bytes without '/' or control characters",
                truncate(&name)
            ),
        });
    }
    if !mime_type.is_empty() && !is_mime(&mime_type) {
        return Err(DecodeError::InvalidField {
            field: "mimeType",
            reason: format!("{:?} is not type/subtype", truncate(&mime_type)),
        });
    }
    if size > MAX_SIZE {
        return Err(DecodeError::InvalidField {
            field: "size",
            reason: format!("{size} exceeds {MAX_SIZE}"),
        });
    }
    Ok(FileInfo {
        name,
        mime_type,
        size,
    })
}

fn is_mime(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let essence = s.split(';').next().unwrap_or("");
    s.len() <= 255
        && !s.chars().any(char::is_control)
        && matches!(essence.trim().split_once('/'), Some((t, st)) if token(t) && token(st))
}

pub(crate) fn check_metadata(json: String) -> Result<String, DecodeError> {
    if json.len() > MAX_METADATA_BYTES {
        return Err(DecodeError::InvalidField {
            field: "metadataJson",
            reason: format!("{} bytes exceeds {MAX_METADATA_BYTES}", json.len()),
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&json).map_err(|e| {
        DecodeError::InvalidField {
            field: "metadataJson",
            reason: format!("not JSON: {e}"),
        }
    })?;
    Ok(json)
}

/// A remote key is `""` (not uploaded) or a safe `<prefix>/<contentHash>` naming this content.
pub(crate) fn check_remote_key(
    key: &str,
    hash: &ContentHash,
) -> Result<Option<RemoteKey>, DecodeError> {
    if key.is_empty() {
        return Ok(None);
    }
    let bad = || DecodeError::InvalidRemoteKey {
        value: truncate(key),
    };
    check_path(key.to_string()).map_err(|_| bad())?;
    match key.rsplit_once('/') {
        Some((store, h)) if h == hash.to_hex() => Ok(Some(RemoteKey::for_content(
            &StoreId::new(store).map_err(|_| bad())?,
            hash,
        ))),
        _ => Err(bad()),
    }
}

/// An event made by a client, not yet confirmed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEvent {
    pub id: EventId,
    pub event: FileEvent,
}

/// An event in the store's total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedEvent {
    pub seq: Seq,
    pub id: EventId,
    pub event: FileEvent,
}

/// Wire shape of [`ClientEvent`] and [`ConfirmedEvent`] (`seq` absent for client events):
/// `{seq, id, name, args}`, the [`WireEvent`] fields inline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEnvelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub id: EventId,
    pub name: String,
    pub args: Box<RawValue>,
}

impl WireEnvelope {
    fn new(seq: Option<u64>, id: &EventId, event: &FileEvent) -> WireEnvelope {
        let WireEvent { name, args } = event.to_wire();
        WireEnvelope {
            seq,
            id: id.clone(),
            name,
            args,
        }
    }
}

impl PartialEq for WireEnvelope {
    fn eq(&self, other: &WireEnvelope) -> bool {
        self.seq == other.seq
            && self.id == other.id
            && self.name == other.name
            && self.args.get() == other.args.get()
    }
}

impl ClientEvent {
    /// The wire shape.
    pub fn to_wire(&self) -> WireEnvelope {
        WireEnvelope::new(None, &self.id, &self.event)
    }
    /// Decodes and validates.
    pub fn from_wire(w: &WireEnvelope) -> Result<ClientEvent, DecodeError> {
        Ok(ClientEvent {
            id: w.id.clone(),
            event: FileEvent::from_parts(&w.name, &w.args)?,
        })
    }
}

impl ConfirmedEvent {
    /// The wire shape.
    pub fn to_wire(&self) -> WireEnvelope {
        WireEnvelope::new(Some(self.seq.0), &self.id, &self.event)
    }
    /// Decodes and validates; a confirmed event must carry its `seq`.
    pub fn from_wire(w: &WireEnvelope) -> Result<ConfirmedEvent, DecodeError> {
        let seq = w.seq.filter(|s| *s > 0).ok_or(DecodeError::InvalidField {
            field: "seq",
            reason: "a confirmed event needs a positive seq".into(),
        })?;
        Ok(ConfirmedEvent {
            seq: Seq(seq),
            id: w.id.clone(),
            event: FileEvent::from_parts(&w.name, &w.args)?,
        })
    }
    /// Decodes one confirmed event from JSON text.
    pub fn decode_json(text: &str) -> Result<ConfirmedEvent, DecodeError> {
        let w: WireEnvelope = serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
            message: e.to_string(),
        })?;
        ConfirmedEvent::from_wire(&w)
    }
}

#[cfg(test)]
mod tests;
