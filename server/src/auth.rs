//! Bearer tokens and the key prefixes each one allows.
//!
//! Format of `--tokens` / `FILESYNC_TOKENS`: entries separated by `;`, each
//! `TOKEN=PREFIX[,PREFIX...]`. A prefix `*` (or an empty list, `TOKEN=`) allows every key, as
//! livestore-filesync's `[]` does. Example: `tok1=storeA/,storeB/;admin=*`. Whitespace around
//! tokens and prefixes is ignored. Prefixes should end with `/` (`storeA/`), otherwise `storeA`
//! also matches `storeAB/...`.
//!
//! Rules (docs/PROTOCOL.md): a missing or unknown token is 401, a key outside the token's
//! prefixes is 403. The event API for store `S` needs a prefix that `S/` starts with. With no
//! tokens configured the server is *open*: every request is anonymous and allowed everything.
//! Tokens are compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a token may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Every key.
    All,
    /// Keys starting with one of these prefixes.
    Prefixes(Vec<String>),
}

impl Allowed {
    /// Whether `key` is inside the allowed prefixes.
    pub fn allows_key(&self, key: &str) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Prefixes(p) => p.iter().any(|p| key.starts_with(p.as_str())),
        }
    }

    /// Whether the token may use the event API of `store` (the prefix `store/`).
    pub fn allows_store(&self, store: &str) -> bool {
        self.allows_key(&format!("{store}/"))
    }

    /// 403 unless `key` is allowed.
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        if self.allows_key(key) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(key.to_string()))
        }
    }

    /// 403 unless `store`'s events are allowed.
    pub fn check_store(&self, store: &str) -> Result<(), ApiError> {
        if self.allows_store(store) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("{store}/")))
        }
    }
}

/// The configured tokens. Empty means open mode.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Allowed)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

/// A `--tokens` value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid tokens entry {entry:?}: {reason} (format: TOKEN=PREFIX,PREFIX;TOKEN2=*)")]
pub struct TokensParseError {
    entry: String,
    reason: &'static str,
}

impl Tokens {
    /// No tokens: open mode.
    pub fn open() -> Tokens {
        Tokens::default()
    }

    /// Parses the `TOKEN=PREFIX,PREFIX;TOKEN2=*` format.
    pub fn parse(spec: &str) -> Result<Tokens, TokensParseError> {
        let mut entries: Vec<(String, Allowed)> = Vec::new();
        for raw in spec.split(';') {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            let err = |reason| TokensParseError {
                // Only the part before `=` could be a secret; show a hint of it at most.
                entry: entry.chars().take(4).collect::<String>() + "…",
                reason,
            };
            let (token, prefixes) = entry.split_once('=').ok_or_else(|| err("missing '='"))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(err("empty token"));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("token contains whitespace"));
            }
            if entries.iter().any(|(t, _)| t == token) {
                return Err(err("token listed twice"));
            }
            let list: Vec<String> = prefixes
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            let allowed = if list.is_empty() || list.iter().any(|p| p == "*") {
                Allowed::All
            } else {
                Allowed::Prefixes(list)
            };
            entries.push((token.to_string(), allowed));
        }
        Ok(Tokens { entries })
    }

    /// Whether no token is configured (every request allowed).
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// Resolves an `Authorization` header value to what it allows.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Allowed, ApiError> {
        if self.is_open() {
            return Ok(Allowed::All);
        }
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        // Look at every entry so the time taken does not depend on which one matched.
        let mut found: Option<&Allowed> = None;
        for (t, allowed) in &self.entries {
            if bool::from(t.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(allowed);
            }
        }
        found.cloned().ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let t = Tokens::parse(" tok1 = storeA/, storeB/ ; tok2=* ;tok3=;").unwrap();
        let a = t.authorize(Some("Bearer tok1")).unwrap();
        assert!(a.allows_key("storeA/x") && a.allows_key("storeB/y") && !a.allows_key("c/z"));
        assert!(a.allows_store("storeA") && !a.allows_store("storeC"));
        assert_eq!(t.authorize(Some("bearer tok2")).unwrap(), Allowed::All);
        assert_eq!(t.authorize(Some("Bearer tok3")).unwrap(), Allowed::All);
        for bad in [
            None,
            Some("Bearer nope"),
            Some("tok1"),
            Some("Basic tok1"),
            Some("Bearer "),
        ] {
            assert!(
                matches!(t.authorize(bad), Err(ApiError::Unauthorized)),
                "{bad:?}"
            );
        }
        for bad in ["x", "=a/", "a=b;a=c", "a b=c"] {
            assert!(Tokens::parse(bad).is_err(), "{bad}");
        }
        assert!(Tokens::parse("").unwrap().is_open());
        assert_eq!(Tokens::open().authorize(None).unwrap(), Allowed::All);
    }

    #[test]
    fn prefix_without_slash_is_taken_literally() {
        let a = Allowed::Prefixes(vec!["s".into()]);
        assert!(a.allows_store("s") && a.allows_store("s2"));
        let b = Allowed::Prefixes(vec!["s/".into()]);
        assert!(b.allows_store("s") && !b.allows_store("s2"));
    }
}
