//! Newtypes for ids, hashes, terms and times, each validated where it is built.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::error::DecodeError;

/// Milliseconds on the driver's clock. The engine never reads a clock: every input carries one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    #[must_use]
    pub fn after(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A leadership term. Every new leader gets a larger one; anything stamped with an older term is
/// rejected, which fences off a leader that froze and woke up after its successor took over.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

/// Position of a confirmed event in a store's total order, given by the server (1-based).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

/// Checks the characters and length shared by store, client and file ids.
fn check_id(kind: &'static str, s: &str) -> Result<(), DecodeError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if s.is_empty() || s.len() > 128 || !s.chars().all(ok_char) || s == "." || s == ".." {
        return Err(DecodeError::InvalidId {
            kind,
            value: truncate(s),
        });
    }
    Ok(())
}

/// Shortens untrusted input before it goes into an error message.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s`: 1-128 characters of `[A-Za-z0-9._:-]`, not `.` or `..`.
            pub fn new(s: impl Into<String>) -> Result<Self, DecodeError> {
                let s = s.into();
                check_id($kind, &s)?;
                Ok(Self(s))
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = DecodeError;
            fn try_from(s: String) -> Result<Self, DecodeError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A store: the unit of sync. Every client of a store sees the same files.
    StoreId,
    "storeId"
);
string_id!(
    /// One browser profile (or one native replica) of a store. All tabs of a browser share it.
    ClientId,
    "clientId"
);
string_id!(
    /// A file, chosen by the client that creates it (a UUID in the browser).
    FileId,
    "fileId"
);

/// SHA-256 of a file's bytes; on the wire 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes` in one go (the browser streams instead; see `web::hash`).
    pub fn of(bytes: &[u8]) -> ContentHash {
        use sha2::Digest;
        ContentHash(sha2::Sha256::digest(bytes).into())
    }
    /// Wraps a finished digest.
    pub fn from_bytes(bytes: [u8; 32]) -> ContentHash {
        ContentHash(bytes)
    }
    /// Parses 64 lowercase hex characters; anything else is an error, never a panic.
    pub fn parse(s: &str) -> Result<ContentHash, DecodeError> {
        let bad = || DecodeError::InvalidHash { value: truncate(s) };
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(bad());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(ContentHash(out))
    }
    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }
}

impl TryFrom<String> for ContentHash {
    type Error = DecodeError;
    fn try_from(s: String) -> Result<Self, DecodeError> {
        ContentHash::parse(&s)
    }
}
impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.to_hex()
    }
}
impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

/// Where a blob lives remotely: `<storeId>/<sha256hex>`, content-addressed and store-scoped,
/// exactly as livestore-filesync's signer API expects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemoteKey(String);

impl RemoteKey {
    /// The key of `hash` in `store`.
    pub fn for_content(store: &StoreId, hash: &ContentHash) -> RemoteKey {
        RemoteKey(format!("{}/{}", store.as_str(), hash.to_hex()))
    }
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of a client-made event: `(client, n)` with `n` counting up per client. The server
/// stores an event once per id, so pushing it again after a lost reply is harmless.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub client: ClientId,
    pub n: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_and_rejects_bad_text() {
        let h = ContentHash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ContentHash::parse(&h.to_hex()).unwrap(), h);
        let upper = h.to_hex().to_uppercase();
        for bad in [
            "",
            "abc",
            upper.as_str(),
            &"g".repeat(64),
            &"a".repeat(65),
            "é".repeat(32).as_str(),
        ] {
            assert!(
                matches!(
                    ContentHash::parse(bad),
                    Err(DecodeError::InvalidHash { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_reject_unsafe_text() {
        assert!(FileId::new("f-1_a.b:c").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(129)] {
            assert!(FileId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_key_is_store_scoped_and_content_addressed() {
        let s = StoreId::new("s1").unwrap();
        let h = ContentHash::of(b"x");
        assert_eq!(
            RemoteKey::for_content(&s, &h).as_str(),
            format!("s1/{}", h.to_hex())
        );
    }
}
