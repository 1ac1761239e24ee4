//! Signed URLs of proxy mode: `HMAC-SHA256(secret, "METHOD\nkey\nexp")`, base64url.
//!
//! The same construction as livestore-filesync's proxy signer, so URLs look alike. The signature
//! is sent without padding; a padded one is accepted too. Verification is constant-time
//! (`Mac::verify_slice`). `HEAD` requests are verified as `GET`.
//!
//! The secret comes from `--signing-secret`, or is 32 random bytes created once per data dir in
//! `<data-dir>/signing-secret` (mode 0600), so a restart keeps issued URLs valid.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::error::ApiError;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// File name of the generated secret inside the data dir.
pub const SECRET_FILE: &str = "signing-secret";

/// Signs and verifies URLs.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with this secret (any length; HMAC hashes long keys).
    pub fn new(secret: impl Into<Vec<u8>>) -> Signer {
        Signer {
            secret: secret.into(),
        }
    }

    /// Reads `<data_dir>/signing-secret`, creating it with 32 random bytes (hex) if missing.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Signer> {
        let path = data_dir.join(SECRET_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(Signer::new(s.trim().as_bytes())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Write then rename, so a crash never leaves a half-written secret.
        let tmp = data_dir.join(format!("{SECRET_FILE}.tmp"));
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(hex.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Signer::new(hex.into_bytes()))
    }

    fn mac(&self, method: &str, key: &str, exp: u64) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{method}\n{key}\n{exp}").as_bytes());
        mac
    }

    /// The signature of `METHOD\nkey\nexp`, base64url without padding.
    pub fn sign(&self, method: &str, key: &str, exp: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(method, key, exp).finalize().into_bytes())
    }

    /// Checks `sig` for `method key exp` at time `now` (unix seconds).
    pub fn verify(
        &self,
        method: &str,
        key: &str,
        exp: u64,
        sig: &str,
        now: u64,
    ) -> Result<(), ApiError> {
        let method = if method == "HEAD" { "GET" } else { method };
        let raw = URL_SAFE_NO_PAD
            .decode(sig.trim_end_matches('='))
            .map_err(|_| ApiError::BadSignature)?;
        self.mac(method, key, exp)
            .verify_slice(&raw)
            .map_err(|_| ApiError::BadSignature)?;
        // Checked after the signature, so a forged expiry is reported as forged.
        if exp < now {
            return Err(ApiError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_documented_string() {
        let s = Signer::new(b"secret".to_vec());
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"secret").unwrap();
        mac.update(b"PUT\ns/abc\n100");
        let want = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(s.sign("PUT", "s/abc", 100), want);
        s.verify("PUT", "s/abc", 100, &want, 100).unwrap();
        s.verify("PUT", "s/abc", 100, &format!("{want}="), 50)
            .unwrap();
        let codes = |r: Result<(), ApiError>| r.unwrap_err().code();
        assert_eq!(codes(s.verify("PUT", "s/abc", 100, &want, 101)), "expired");
        assert_eq!(
            codes(s.verify("GET", "s/abc", 100, &want, 0)),
            "bad_signature"
        );
        assert_eq!(
            codes(s.verify("PUT", "s/abd", 100, &want, 0)),
            "bad_signature"
        );
        assert_eq!(
            codes(s.verify("PUT", "s/abc", 101, &want, 0)),
            "bad_signature"
        );
        assert_eq!(
            codes(s.verify("PUT", "s/abc", 100, "!!", 0)),
            "bad_signature"
        );
        let get = s.sign("GET", "k", 5);
        s.verify("HEAD", "k", 5, &get, 0).unwrap();
    }

    #[test]
    fn secret_persists_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path()).unwrap();
        let b = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(a.sign("GET", "k", 1), b.sign("GET", "k", 1));
    }
}
