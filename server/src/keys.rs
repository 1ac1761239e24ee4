//! Blob keys: checked before they reach any storage path.
//!
//! Two checks, in order: the signer contract's safety rules (not empty, no leading `/`, no
//! empty, `.` or `..` segment, no backslash, no control character), then this server's
//! content-addressed shape: exactly `<storeId>/<64 lowercase hex>`. A key that passes both can
//! only name a file two levels under the blob directory, never a path outside it.

use filesync::core::ids::{ContentHash, RemoteKey, StoreId};

use crate::error::ApiError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A validated content-addressed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    pub store: StoreId,
    pub hash: ContentHash,
}

impl BlobKey {
    /// The key as text (`store/hash`).
    pub fn as_string(&self) -> String {
        RemoteKey::for_content(&self.store, &self.hash)
            .as_str()
            .to_string()
    }
}

/// The signer contract's safety rules (400 `invalid_key` when broken).
pub fn check_safe(key: &str) -> Result<(), ApiError> {
    let reason = if key.is_empty() {
        Some("empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("too long")
    } else if key.starts_with('/') {
        Some("starts with '/'")
    } else if key.contains('\\') {
        Some("contains a backslash")
    } else if key.chars().any(char::is_control) {
        Some("contains a control character")
    } else if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        Some("has an empty, '.' or '..' segment")
    } else {
        None
    };
    match reason {
        Some(r) => Err(ApiError::InvalidKey(r.to_string())),
        None => Ok(()),
    }
}

/// Parses a key: safe, and exactly `<storeId>/<sha256 lowercase hex>`.
pub fn parse(key: &str) -> Result<BlobKey, ApiError> {
    check_safe(key)?;
    let shape = || ApiError::InvalidKey("must be <storeId>/<sha256 lowercase hex>".into());
    let (store, hash) = key.split_once('/').ok_or_else(shape)?;
    let store = StoreId::new(store).map_err(|_| shape())?;
    let hash = ContentHash::parse(hash).map_err(|_| shape())?;
    Ok(BlobKey { store, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_and_non_content_keys() {
        let h = ContentHash::of(b"x").to_hex();
        let ok = format!("s/{h}");
        assert_eq!(parse(&ok).unwrap().as_string(), ok);
        for bad in [
            String::new(),
            format!("/s/{h}"),
            format!("s//{h}"),
            format!("./{h}"),
            format!("../{h}"),
            format!("s/../{h}"),
            format!("s\\{h}"),
            format!("s/{h}\n"),
            format!("s/{}", h.to_uppercase()),
            format!("s/{h}/x"),
            format!("s/{}", &h[..63]),
            format!("a b/{h}"),
            h.clone(),
            "x".repeat(2000),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.code(), "invalid_key", "{bad:?}");
        }
    }
}
