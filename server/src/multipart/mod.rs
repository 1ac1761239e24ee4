//! The multipart extension of the signer API: large blobs uploaded in parts that survive
//! interruptions (docs/PROTOCOL.md, "Multipart uploads").
//!
//! An upload is created for one key with its total size and part size ([`Plan`]); the client
//! asks for signed URLs of parts (several per request), `PUT`s them in any order and as often as
//! it needs, and completes the upload with every part's ETag; or aborts it. The server keeps a
//! [`Manifest`] per upload under `_uploads/<id>/manifest` in the blob store itself (no store's
//! folder can be `_uploads`: `_` is not a store id character), so any instance sharing the blob store can serve any call of an upload, and a restart forgets
//! nothing.
//!
//! Where the parts go depends on the blob mode ([`store`]):
//! * proxy on local disk ([`disk`]): every part is written in place into one file per upload;
//!   completing hashes that file and renames it into place if it hashes to its key, so the
//!   bytes reach the disk once.
//! * proxy on S3 through this server: parts are stored as objects
//!   `_uploads/<id>/<n>-<sha256 hex>`; completing streams them in order through SHA-256 into the
//!   final object, which is kept only if it hashes to its key (the same check as a single `PUT`).
//! * presign: the bucket's own multipart upload (`CreateMultipartUpload` with SHA-256 checksums);
//!   part URLs are presigned `UploadPart` requests bound to the part's `x-amz-checksum-sha256`,
//!   and completing is `CompleteMultipartUpload`. The server reads the object back to verify its
//!   hash only up to the verify size of presign mode (the same bound as single uploads).
//!
//! Rules every mode keeps (checked here, as pure functions, before any storage is touched):
//! * parts are `1..=N`, all of [`Plan::part_size`] bytes except the last; `N <= MAX_PARTS`;
//!   parts are at least [`MIN_PART_BYTES`] (S3's minimum), so one client plan fits every mode;
//! * every part is sent with its SHA-256 and refused if its bytes differ;
//! * completing names every part exactly once, in order, each with the ETag its `PUT` returned;
//! * uploads older than the configured age are aborted by [`store::sweep`] (at start and
//!   periodically); aborting or sweeping twice, from two instances at once, is harmless.

mod disk;
pub mod routes;
pub mod store;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Smallest part (except the last): S3's minimum.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Largest part: S3's maximum.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Most parts of one upload: S3's maximum.
pub const MAX_PARTS: u64 = 10_000;
/// Most part URLs signed by one request.
pub const MAX_SIGN_PARTS: usize = 100;
/// The folder (first path segment) of upload manifests and staged parts.
pub const UPLOADS_DIR: &str = "_uploads";

/// How one upload is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Total bytes.
    pub size: u64,
    /// Bytes of every part but the last.
    pub part_size: u64,
}

impl Plan {
    /// Checks a client's plan against the part rules and the server's blob size limit.
    pub fn new(size: u64, part_size: u64, max_blob_bytes: u64) -> Result<Plan, ApiError> {
        if size > max_blob_bytes {
            return Err(ApiError::TooLarge {
                limit: max_blob_bytes,
            });
        }
        if size == 0 {
            return Err(ApiError::InvalidRequest(
                "an empty blob is uploaded with one PUT, not in parts".into(),
            ));
        }
        if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&part_size) {
            return Err(ApiError::InvalidRequest(format!(
                "partSize must be {MIN_PART_BYTES}..={MAX_PART_BYTES} bytes, got {part_size}"
            )));
        }
        let plan = Plan { size, part_size };
        if plan.part_count() > MAX_PARTS {
            return Err(ApiError::InvalidRequest(format!(
                "{size} bytes in parts of {part_size} make more than {MAX_PARTS} parts"
            )));
        }
        Ok(plan)
    }

    /// Number of parts.
    pub fn part_count(&self) -> u64 {
        self.size.div_ceil(self.part_size)
    }

    /// The length of part `n` (1-based), or an error if there is no such part.
    pub fn part_len(&self, n: u64) -> Result<u64, ApiError> {
        let count = self.part_count();
        if n == 0 || n > count {
            return Err(ApiError::InvalidRequest(format!(
                "partNumber must be 1..={count}, got {n}"
            )));
        }
        Ok(if n == count {
            self.size - (count - 1) * self.part_size
        } else {
            self.part_size
        })
    }
}

/// What the server keeps about one upload (JSON, `_uploads/<id>/manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The blob key (`<store>/<sha256 hex>`).
    pub key: String,
    #[serde(flatten)]
    pub plan: Plan,
    /// When the upload was created (unix seconds).
    pub created: u64,
    /// Presign mode: the bucket's own upload id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
}

/// An upload id: 32 lowercase hex characters (128 random bits), so it is safe in a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    /// A new random id.
    pub fn random() -> Result<UploadId, ApiError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("random upload id", e))?;
        Ok(UploadId(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Parses a client's id; anything but 32 lowercase hex is `upload_not_found` (it cannot
    /// name an upload, and must never reach a path).
    pub fn parse(raw: &str) -> Result<UploadId, ApiError> {
        let ok = raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(UploadId(raw.to_string()))
        } else {
            Err(ApiError::UploadNotFound)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A part's SHA-256 as a client sends it (`checksumSha256`: standard base64 of 32 bytes, as S3's
/// `x-amz-checksum-sha256`); kept as lowercase hex inside this server.
pub fn checksum_hex(base64: &str) -> Result<String, ApiError> {
    let bytes = STANDARD
        .decode(base64.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "checksumSha256 must be the base64 of 32 bytes, got {base64:?}"
            ))
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The base64 form of a hex SHA-256 (for `x-amz-checksum-sha256`).
pub fn checksum_base64(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    bytes.filter(|b| b.len() == 32).map(|b| STANDARD.encode(b))
}

/// One part named by a complete request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part_number: u64,
    /// The ETag the part's `PUT` answered with (quotes optional).
    pub etag: String,
    /// The part's SHA-256 (base64), as signed.
    pub checksum_sha256: String,
}

impl CompletedPart {
    /// The ETag without surrounding quotes.
    pub fn bare_etag(&self) -> &str {
        self.etag.trim().trim_matches('"')
    }
}

/// Proxy mode: checks that every part of `parts` was stored with the ETag it names, which must
/// be its checksum in hex (the staged name `<n>-<sha256 hex>`); `stored(part, name)` says
/// whether that name is staged (with the right length, where the backend knows it).
pub(crate) fn check_staged(
    parts: &[CompletedPart],
    stored: impl Fn(&CompletedPart, &str) -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    for part in parts {
        let name = format!("{}-{}", part.part_number, part.bare_etag());
        let same_sum = checksum_hex(&part.checksum_sha256)? == part.bare_etag();
        if !same_sum || !stored(part, &name)? {
            return Err(ApiError::InvalidRequest(format!(
                "part {} was not uploaded with ETag {} (upload it again)",
                part.part_number, part.etag
            )));
        }
    }
    Ok(())
}

/// Checks that `parts` name parts `1..=N` of `plan` exactly once, in order.
pub fn check_complete(plan: &Plan, parts: &[CompletedPart]) -> Result<(), ApiError> {
    let count = plan.part_count();
    if parts.len() as u64 != count {
        return Err(ApiError::InvalidRequest(format!(
            "the upload has {count} parts, the request names {}",
            parts.len()
        )));
    }
    for (i, part) in parts.iter().enumerate() {
        if part.part_number != i as u64 + 1 {
            return Err(ApiError::InvalidRequest(format!(
                "parts must be listed as 1..={count} in order; entry {} is part {}",
                i + 1,
                part.part_number
            )));
        }
        let etag = part.bare_etag();
        if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ApiError::InvalidRequest(format!(
                "part {} has no valid etag ({:?})",
                part.part_number, part.etag
            )));
        }
        checksum_hex(&part.checksum_sha256)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn plans_keep_the_part_rules() {
        let plan = Plan::new(12 * MIB, 5 * MIB, u64::MAX).unwrap();
        assert_eq!(plan.part_count(), 3);
        assert_eq!(plan.part_len(1).unwrap(), 5 * MIB);
        assert_eq!(plan.part_len(3).unwrap(), 2 * MIB);
        for bad in [0, 4] {
            assert_eq!(plan.part_len(bad).unwrap_err().code(), "invalid_request");
        }
        // One part smaller than the minimum is a whole upload of one part.
        assert_eq!(Plan::new(10, 5 * MIB, u64::MAX).unwrap().part_count(), 1);
        let exact = Plan::new(10 * MIB, 5 * MIB, u64::MAX).unwrap();
        assert_eq!(exact.part_len(2).unwrap(), 5 * MIB);

        let code = |r: Result<Plan, ApiError>| r.unwrap_err().code();
        assert_eq!(code(Plan::new(0, 5 * MIB, u64::MAX)), "invalid_request");
        assert_eq!(code(Plan::new(20 * MIB, MIB, u64::MAX)), "invalid_request");
        assert_eq!(
            code(Plan::new(20 * MIB, 6 * 1024 * MIB, u64::MAX)),
            "invalid_request"
        );
        assert_eq!(code(Plan::new(20 * MIB, 5 * MIB, 10 * MIB)), "too_large");
        assert_eq!(
            code(Plan::new(MAX_PARTS * 5 * MIB + 1, 5 * MIB, u64::MAX)),
            "invalid_request"
        );
        assert!(Plan::new(MAX_PARTS * 5 * MIB, 5 * MIB, u64::MAX).is_ok());
    }

    #[test]
    fn upload_ids_are_hex_and_anything_else_is_not_found() {
        let id = UploadId::random().unwrap();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "../x",
            &"A".repeat(32),
            &"a".repeat(31),
            &"a/".repeat(16),
        ] {
            assert_eq!(UploadId::parse(bad).unwrap_err().code(), "upload_not_found");
        }
    }

    #[test]
    fn checksums_convert_between_base64_and_hex() {
        let hex = filesync::core::ids::ContentHash::of(b"part").to_hex();
        let b64 = checksum_base64(&hex).unwrap();
        assert_eq!(checksum_hex(&b64).unwrap(), hex);
        assert!(checksum_hex("AAAA").is_err());
        assert!(checksum_hex("not base64!").is_err());
        assert_eq!(checksum_base64("zz"), None);
    }

    #[test]
    fn a_complete_request_names_every_part_once_in_order() {
        let plan = Plan::new(12 * MIB, 5 * MIB, u64::MAX).unwrap();
        let sum = checksum_base64(&"ab".repeat(32)).unwrap();
        let part = |n: u64| CompletedPart {
            part_number: n,
            etag: format!("\"e{n}\""),
            checksum_sha256: sum.clone(),
        };
        check_complete(&plan, &[part(1), part(2), part(3)]).unwrap();
        assert_eq!(part(1).bare_etag(), "e1");
        for bad in [
            vec![part(1), part(2)],
            vec![part(1), part(3), part(2)],
            vec![part(1), part(1), part(3)],
            vec![part(1), part(2), part(3), part(4)],
        ] {
            assert_eq!(
                check_complete(&plan, &bad).unwrap_err().code(),
                "invalid_request"
            );
        }
        for etag in ["\"\"", "\"a<b\"", "a b"] {
            let mut bad = part(3);
            bad.etag = etag.into();
            assert!(
                check_complete(&plan, &[part(1), part(2), bad]).is_err(),
                "{etag}"
            );
        }
    }

    #[test]
    fn manifests_round_trip_as_json() {
        let m = Manifest {
            key: "s/abc".into(),
            plan: Plan {
                size: 10,
                part_size: MIN_PART_BYTES,
            },
            created: 7,
            backend_id: Some("x".into()),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"partSize\""), "{json}");
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
    }
}
