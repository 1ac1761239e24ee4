//! Connection settings of an S3-compatible bucket and the object-key prefix rules.

/// Connection settings of an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS (`s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// `endpoint/bucket/key` (true) or `bucket.endpoint/key` (false, virtual-hosted).
    pub path_style: bool,
    /// Presign mode: objects up to this size are hashed when first referenced by a push.
    pub verify_max_bytes: u64,
    /// Object-key prefix (`apps/photos/`) under which every object lives; `None`: the bucket
    /// root. Checked by [`normalize_s3_prefix`] (a missing trailing `/` is added).
    pub prefix: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .field("verify_max_bytes", &self.verify_max_bytes)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Default of [`S3Config::verify_max_bytes`]: 16 MiB.
pub const DEFAULT_VERIFY_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Longest [`S3Config::prefix`], in bytes (S3 keys are at most 1,024; `<store>/<sha256>` needs
/// the rest).
pub const MAX_S3_PREFIX_BYTES: usize = 512;

/// Checks an object-key prefix and returns it normalized, ending with `/`: a relative path of
/// non-empty segments, none of them `.` or `..`, without control characters, at most
/// [`MAX_S3_PREFIX_BYTES`] long. `apps/photos` becomes `apps/photos/`.
pub fn normalize_s3_prefix(prefix: &str) -> Result<String, String> {
    if prefix.is_empty() {
        return Err("the S3 prefix is empty".into());
    }
    if prefix.starts_with('/') {
        return Err(format!(
            "the S3 prefix {prefix:?} starts with '/'; give a relative path like apps/photos/"
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the S3 prefix {prefix:?} contains the control character {c:?}"
        ));
    }
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    for segment in body.split('/') {
        match segment {
            "" => {
                return Err(format!(
                    "the S3 prefix {prefix:?} has an empty segment ('//')"
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "the S3 prefix {prefix:?} has a {segment:?} segment; give a normalized path"
                ))
            }
            _ => {}
        }
    }
    let normalized = format!("{body}/");
    if normalized.len() > MAX_S3_PREFIX_BYTES {
        return Err(format!(
            "the S3 prefix is {} bytes long; at most {MAX_S3_PREFIX_BYTES} are allowed",
            normalized.len()
        ));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_prefixes_are_normalized_or_refused() {
        for (given, expected) in [
            ("apps/photos/", "apps/photos/"),
            ("apps/photos", "apps/photos/"),
            ("a", "a/"),
            ("deploy-1/blobs.v2/", "deploy-1/blobs.v2/"),
            ("données/", "données/"),
        ] {
            assert_eq!(
                normalize_s3_prefix(given).as_deref(),
                Ok(expected),
                "{given}"
            );
        }
        for bad in [
            "",
            "/",
            "/apps/",
            "apps//photos/",
            "apps/photos//",
            "../apps/",
            "apps/../x/",
            "./apps",
            "apps/./x",
            "apps\nx/",
            "apps/\u{7f}/",
            "apps\tx",
        ] {
            assert!(normalize_s3_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_s3_prefix(&"a".repeat(MAX_S3_PREFIX_BYTES)).is_err());
        assert!(normalize_s3_prefix(&"a".repeat(MAX_S3_PREFIX_BYTES - 1)).is_ok());
    }
}
