//! `Range: bytes=...` requests of blob downloads.

use std::ops::Range;

use crate::error::BlobError;

/// A `Range: bytes=...` request, resolved against the size once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive end) or `bytes=a-` (`end: None`).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses one `bytes=` range. `None` for anything else (several ranges, other units,
    /// garbage): the caller then serves the whole object, as RFC 9110 allows.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() {
            None
        } else {
            let end: u64 = b.parse().ok()?;
            if end < start {
                return None;
            }
            Some(end)
        };
        Some(ByteRange::From { start, end })
    }

    /// The half-open byte range inside an object of `size` bytes, or `Err` if unsatisfiable.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, BlobError> {
        match self {
            ByteRange::From { start, end } if start < size => {
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                Ok(start..end)
            }
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size.saturating_sub(n)..size),
            _ => Err(BlobError::Range { size }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |s| ByteRange::parse(s);
        assert_eq!(r("bytes=0-9").unwrap().resolve(100).unwrap(), 0..10);
        assert_eq!(r("bytes=90-").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=90-500").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=-10").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=-500").unwrap().resolve(100).unwrap(), 0..100);
        assert!(r("bytes=100-").unwrap().resolve(100).is_err());
        assert!(r("bytes=-0").unwrap().resolve(100).is_err());
        for bad in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }
}
