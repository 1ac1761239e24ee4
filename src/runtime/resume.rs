//! Resuming a download: which bytes to ask for, and what the answer to a `Range` request means.
//!
//! A download writes into a partial file that survives reloads (see `web::bytes`). The next
//! attempt asks for the rest with `Range: bytes=<held>-`, then decides from the answer where its
//! body starts:
//!
//! | answer | meaning | the download |
//! |---|---|---|
//! | 206, `Content-Range: bytes <held>-<size-1>/<size or *>` | the rest | appends to the partial file |
//! | 206 without a readable `Content-Range` (not exposed by CORS), `Content-Length` = size - held | the rest | appends |
//! | 200 | the whole content (the server or signed URL ignores `Range`) | starts over at byte 0 |
//! | 206 for other bytes, 416 | the partial file does not match what the server holds | discards it, fails, and the retry starts over |
//! | anything else | an error | classified as any download's |
//!
//! Whatever is appended, the whole content is hashed (the held prefix re-read locally) and
//! checked against the content hash before it is stored, so a wrong decision here can cost
//! a retry but never store wrong bytes.

use crate::core::Failure;

use super::remote::check_status;

/// Downloads smaller than this never resume: starting over costs less than looking for a
/// partial file before every small download (a store of many small files downloads them all).
pub const MIN_RESUMED: u64 = 4 * 1024 * 1024;

/// The request header that asks for the bytes after the `held` ones (`None`: ask for all).
pub fn range_header(held: u64, size: u64) -> Option<(String, String)> {
    (held > 0 && held < size).then(|| ("range".to_string(), format!("bytes={held}-")))
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeRefused {
    /// The answer is an error: classified as usual.
    Failed(Failure),
    /// The answer does not continue the partial file: drop it (the retry starts over).
    Mismatch(Failure),
}

/// The offset of the answer's body in the content: `held` to append to the partial file, `0`
/// to start over. `asked` is the offset the request asked for (`0`: no `Range` sent),
/// `content_range` and `length` the answer's headers, `size` the content's size.
pub fn body_offset(
    asked: u64,
    status: u16,
    retry_after: Option<&str>,
    content_range: Option<&str>,
    length: Option<u64>,
    size: u64,
) -> Result<u64, RangeRefused> {
    let mismatch = |why: &str| {
        RangeRefused::Mismatch(Failure::Protocol {
            message: format!("download resumed at byte {asked}: {why}"),
        })
    };
    match status {
        206 if asked == 0 => Err(mismatch("a partial answer to a request for everything")),
        206 => match content_range {
            Some(header) if continues(header, asked, size) => Ok(asked),
            None if length == Some(size.saturating_sub(asked)) => Ok(asked),
            Some(header) => Err(mismatch(header)),
            None => Err(mismatch("other bytes, without a Content-Range")),
        },
        416 if asked > 0 => Err(mismatch("range not satisfiable")),
        _ => check_status(status, retry_after)
            .map(|()| 0)
            .map_err(RangeRefused::Failed),
    }
}

/// Whether `Content-Range` (RFC 9110 §14.4: `bytes <first>-<last>/<total or *>`) is the rest of
/// a content of `size` bytes after `asked` of them.
fn continues(header: &str, asked: u64, size: u64) -> bool {
    let head = format!("bytes {asked}-{}/", size.saturating_sub(1));
    header
        .trim()
        .strip_prefix(&head)
        .is_some_and(|total| total == "*" || total == size.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 1000;

    fn answer(
        asked: u64,
        status: u16,
        range: Option<&str>,
        length: Option<u64>,
    ) -> Result<u64, RangeRefused> {
        body_offset(asked, status, None, range, length, SIZE)
    }

    fn is_mismatch(r: Result<u64, RangeRefused>) -> bool {
        matches!(r, Err(RangeRefused::Mismatch(Failure::Protocol { .. })))
    }

    #[test]
    fn asks_for_the_rest_only_with_a_proper_prefix() {
        assert_eq!(range_header(0, SIZE), None);
        assert_eq!(
            range_header(SIZE, SIZE),
            None,
            "all held: verify, do not ask for nothing"
        );
        assert_eq!(
            range_header(400, SIZE),
            Some(("range".into(), "bytes=400-".into()))
        );
    }

    #[test]
    fn the_rest_appends() {
        assert_eq!(
            answer(400, 206, Some("bytes 400-999/1000"), Some(600)),
            Ok(400)
        );
        assert_eq!(answer(400, 206, Some("bytes 400-999/*"), None), Ok(400));
        // CORS hid Content-Range: the length tells it is the rest.
        assert_eq!(answer(400, 206, None, Some(600)), Ok(400));
    }

    #[test]
    fn a_whole_answer_starts_over() {
        assert_eq!(answer(400, 200, None, Some(SIZE)), Ok(0), "Range ignored");
        assert_eq!(answer(0, 200, None, Some(SIZE)), Ok(0));
    }

    #[test]
    fn other_bytes_drop_the_partial_file() {
        for (asked, status, range, length) in [
            (400, 206, Some("bytes 0-999/1000"), None),
            (400, 206, Some("bytes 400-899/1000"), None),
            (400, 206, Some("bytes 400-999/2000"), None),
            (400, 206, Some("bytes=400-999/1000"), None),
            (400, 206, None, Some(100)),
            (400, 206, None, None),
            (0, 206, Some("bytes 0-999/1000"), None),
            (400, 416, None, None),
        ] {
            let got = answer(asked, status, range, length);
            assert!(
                is_mismatch(got.clone()),
                "{asked} {status} {range:?} {length:?}: {got:?}"
            );
        }
    }

    #[test]
    fn errors_are_classified_as_any_download() {
        assert_eq!(
            answer(400, 404, None, None),
            Err(RangeRefused::Failed(Failure::NotFound))
        );
        assert_eq!(
            answer(0, 503, None, None),
            Err(RangeRefused::Failed(Failure::Server { status: 503 }))
        );
        assert_eq!(
            body_offset(0, 429, Some("2"), None, None, SIZE),
            Err(RangeRefused::Failed(Failure::RateLimited {
                retry_after_ms: Some(2000)
            }))
        );
    }
}
