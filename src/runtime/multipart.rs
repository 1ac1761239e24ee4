//! Multipart uploads, the client's side (`docs/PROTOCOL.md`, "Multipart uploads"): which files
//! go in parts and in which parts, the resume text the engine keeps in the per-client state,
//! and the calls' bodies and answers. Pure, so every rule is tested natively; the leader tab
//! sends what this builds (`runtime::transfer`).
//!
//! # The resume text
//!
//! What a later attempt (after a reload, a crash, another tab taking over, a server restart)
//! needs to go on: the upload id, the part size, and every finished part with its checksum and
//! ETag. The engine stores it opaquely; it changes when the upload is created and each time a
//! part finishes (not per progress event). One line per item, the ETag last (it may hold
//! anything but a line break):
//!
//! ```text
//! <uploadId> <partSize>
//! <partNumber> <checksumSha256> <etag>
//! ```

use serde::Deserialize;

use super::remote::{protocol, signed, Signed, SignedWire};
use crate::core::Failure;

const MIB: u64 = 1024 * 1024;

/// Files at least this large upload in parts, where the server offers them. Below it one `PUT`
/// is as fast on a good network and costs three calls less.
pub const THRESHOLD: u64 = 64 * MIB;

/// The smallest part (S3's minimum is 5 MiB). Larger parts for files over 80 GiB, so that no
/// upload needs more than [`MAX_PARTS`].
pub const MIN_PART: u64 = 8 * MIB;

/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// Parts sent at once: enough to fill a link whose single stream is slow, and the bound on
/// memory (one part's bytes per part in flight while it is checksummed).
pub const PARALLEL: usize = 4;

/// The part size for a file of `size` bytes: [`MIN_PART`], or the MiB multiple that keeps the
/// count within [`MAX_PARTS`].
pub fn part_size(size: u64) -> u64 {
    MIN_PART.max(size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB)
}

/// Whether an answer to `create` says the signer has no multipart extension (a
/// livestore-filesync backend, a proxy that does not route it): upload in one `PUT`.
pub fn unsupported(status: u16) -> bool {
    matches!(status, 404 | 405 | 501)
}

/// Whether an answer to `sign` or `complete` says the upload is gone or unusable (aborted,
/// swept, a part missing or its ETag unknown): forget it and start a new one.
pub fn upload_lost(status: u16) -> bool {
    matches!(status, 400 | 404)
}

/// The upload id of a resume text (what `abort` needs), without reading the rest.
pub fn upload_id(resume: &str) -> Option<&str> {
    resume.split([' ', '\n']).next().filter(|id| !id.is_empty())
}

/// A finished part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    /// Standard base64 of the part's SHA-256.
    pub checksum: String,
    pub etag: String,
}

/// A multipart upload under way (see the module docs for its text form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub upload_id: String,
    pub part_size: u64,
    /// Finished parts, in increasing number order.
    pub parts: Vec<Part>,
}

impl Resume {
    pub fn new(upload_id: String, part_size: u64) -> Resume {
        Resume {
            upload_id,
            part_size,
            parts: Vec::new(),
        }
    }

    /// The text the engine keeps.
    pub fn to_text(&self) -> String {
        let mut s = format!("{} {}", self.upload_id, self.part_size);
        for p in &self.parts {
            s.push_str(&format!("\n{} {} {}", p.number, p.checksum, p.etag));
        }
        s
    }

    /// Reads a resume text for a file of `size` bytes; `None` if it is not one (then the
    /// upload starts over).
    pub fn parse(text: &str, size: u64) -> Option<Resume> {
        let mut lines = text.split('\n');
        let (id, part_size) = lines.next()?.split_once(' ')?;
        let part_size: u64 = part_size.parse().ok()?;
        if id.is_empty() || part_size == 0 {
            return None;
        }
        let mut r = Resume::new(id.to_string(), part_size);
        for line in lines {
            let mut f = line.splitn(3, ' ');
            let number: u32 = f.next()?.parse().ok()?;
            let (checksum, etag) = (f.next()?, f.next()?);
            // In increasing order, as written: each number once, and `missing` can search.
            let after = r.parts.last().map_or(0, |p| p.number);
            if number <= after || number > r.count(size) {
                return None;
            }
            r.parts.push(Part {
                number,
                checksum: checksum.to_string(),
                etag: etag.to_string(),
            });
        }
        Some(r)
    }

    /// How many parts a file of `size` bytes has.
    pub fn count(&self, size: u64) -> u32 {
        size.div_ceil(self.part_size).max(1) as u32
    }

    /// The bytes of part `number`: `[start, end)`.
    pub fn range(&self, number: u32, size: u64) -> (u64, u64) {
        let start = (u64::from(number) - 1) * self.part_size;
        (start, (start + self.part_size).min(size))
    }

    /// The parts still to send, in order.
    pub fn missing(&self, size: u64) -> Vec<u32> {
        (1..=self.count(size))
            .filter(|n| self.parts.binary_search_by_key(n, |p| p.number).is_err())
            .collect()
    }

    /// Bytes of the finished parts.
    pub fn done_bytes(&self, size: u64) -> u64 {
        self.parts
            .iter()
            .map(|p| {
                let (a, b) = self.range(p.number, size);
                b - a
            })
            .sum()
    }

    /// Records a finished part (again: replaced).
    pub fn finish(&mut self, part: Part) {
        self.parts.retain(|p| p.number != part.number);
        let at = self.parts.partition_point(|p| p.number < part.number);
        self.parts.insert(at, part);
    }
}

/// A JSON string (the bodies are written by hand: a serde derive per body costs more wasm than
/// these few lines).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn key_upload(key: &str, upload_id: &str) -> String {
    format!(r#"{{"key":{},"uploadId":{}"#, quote(key), quote(upload_id))
}

/// `"parts":[...]` of `sign` (no ETags) or `complete`.
fn parts_json<'a>(parts: impl Iterator<Item = (u32, &'a str, Option<&'a str>)>) -> String {
    let mut s = String::from(r#","parts":["#);
    for (i, (n, sum, etag)) in parts.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s += &format!(r#"{{"partNumber":{n},"checksumSha256":{}"#, quote(sum));
        if let Some(e) = etag {
            s += &format!(r#","etag":{}"#, quote(e));
        }
        s.push('}');
    }
    s + "]}"
}

/// Body of `create`.
pub fn create_body(key: &str, size: u64) -> String {
    format!(
        r#"{{"key":{},"size":{size},"partSize":{}}}"#,
        quote(key),
        part_size(size)
    )
}

/// Body of `sign` for these parts (number, checksum).
pub fn sign_body(key: &str, upload_id: &str, parts: &[(u32, String)]) -> String {
    key_upload(key, upload_id) + &parts_json(parts.iter().map(|(n, c)| (*n, c.as_str(), None)))
}

/// Body of `complete`: every part, in order.
pub fn complete_body(key: &str, r: &Resume) -> String {
    key_upload(key, &r.upload_id)
        + &parts_json(
            r.parts
                .iter()
                .map(|p| (p.number, p.checksum.as_str(), Some(p.etag.as_str()))),
        )
}

/// Body of `abort`.
pub fn abort_body(key: &str, upload_id: &str) -> String {
    key_upload(key, upload_id) + "}"
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedWire {
    upload_id: String,
    part_size: u64,
}

/// The upload `create` made, for a file of `size` bytes. The server may choose another part
/// size than the one asked for; an id that cannot be written in a resume text is refused.
pub fn parse_created(text: &str, size: u64) -> Result<Resume, Failure> {
    let w: CreatedWire =
        serde_json::from_str(text).map_err(|e| protocol("multipart create answer", e))?;
    if w.upload_id.is_empty()
        || w.upload_id.contains([' ', '\n'])
        || w.part_size == 0
        || size.div_ceil(w.part_size) > MAX_PARTS
    {
        return Err(protocol(
            "multipart create answer",
            format!("upload {:?} in parts of {}", w.upload_id, w.part_size),
        ));
    }
    Ok(Resume::new(w.upload_id, w.part_size))
}

#[derive(Deserialize)]
struct SignedPartsWire {
    parts: Vec<SignedWire>,
}

/// The URLs `sign` answered, in the order of `asked` (each part asked for must be there).
pub fn parse_signed_parts(text: &str, base: &str, asked: &[u32]) -> Result<Vec<Signed>, Failure> {
    let w: SignedPartsWire =
        serde_json::from_str(text).map_err(|e| protocol("multipart sign answer", e))?;
    let mut by_number = w.parts;
    asked
        .iter()
        .map(|n| {
            let at = by_number
                .iter()
                .position(|w| w.part_number == Some(*n))
                .ok_or_else(|| protocol("multipart sign answer", format!("no part {n}")))?;
            signed(by_number.swap_remove(at), base, "PUT")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 20 * MIB + 5;

    #[test]
    fn parts_are_8_mib_until_the_count_would_pass_10000() {
        assert_eq!(part_size(THRESHOLD), MIN_PART);
        assert_eq!(part_size(6 * 1024 * MIB), MIN_PART);
        assert_eq!(part_size(MAX_PARTS * MIN_PART), MIN_PART);
        let huge = MAX_PARTS * MIN_PART + 1;
        assert_eq!(part_size(huge), 9 * MIB);
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
    }

    #[test]
    fn a_resume_text_round_trips_and_names_what_is_left() {
        let mut r = Resume::new("abc123".into(), 8 * MIB);
        assert_eq!(r.count(SIZE), 3);
        assert_eq!(r.range(3, SIZE), (16 * MIB, SIZE));
        r.finish(Part {
            number: 2,
            checksum: "c3VtMg==".into(),
            etag: "\"e 2\"".into(),
        });
        r.finish(Part {
            number: 1,
            checksum: "c3VtMQ==".into(),
            etag: "\"e1\"".into(),
        });
        assert_eq!(r.missing(SIZE), vec![3]);
        assert_eq!(r.done_bytes(SIZE), 16 * MIB);
        let text = r.to_text();
        assert_eq!(
            text,
            "abc123 8388608\n1 c3VtMQ== \"e1\"\n2 c3VtMg== \"e 2\""
        );
        assert_eq!(Resume::parse(&text, SIZE), Some(r.clone()));
        assert_eq!(upload_id(&text), Some("abc123"));
        assert_eq!(upload_id(""), None);
        // A part sent again replaces the first.
        r.finish(Part {
            number: 1,
            checksum: "c3VtMQ==".into(),
            etag: "\"e1b\"".into(),
        });
        assert_eq!(r.parts.len(), 2);
        assert_eq!(r.parts[0].etag, "\"e1b\"");
    }

    #[test]
    fn a_broken_resume_text_starts_over() {
        for bad in [
            "",
            "abc",
            "abc x",
            "abc 0",
            " 8388608",
            "abc 8388608\n0 sum etag",
            "abc 8388608\n4 sum etag",
            "abc 8388608\n1 sum",
            "abc 8388608\n1 sum e\n1 sum e",
            "abc 8388608\n2 sum e\n1 sum e",
        ] {
            assert_eq!(Resume::parse(bad, SIZE), None, "{bad:?}");
        }
    }

    #[test]
    fn bodies_are_the_documented_json() {
        assert_eq!(
            create_body("s/h", THRESHOLD),
            r#"{"key":"s/h","size":67108864,"partSize":8388608}"#
        );
        assert_eq!(
            sign_body("s/h", "u1", &[(1, "c1".into()), (2, "c2".into())]),
            r#"{"key":"s/h","uploadId":"u1","parts":[{"partNumber":1,"checksumSha256":"c1"},{"partNumber":2,"checksumSha256":"c2"}]}"#
        );
        let mut r = Resume::new("u1".into(), MIN_PART);
        r.finish(Part {
            number: 1,
            checksum: "c1".into(),
            etag: "\"e1\"".into(),
        });
        assert_eq!(
            complete_body("s/h", &r),
            r#"{"key":"s/h","uploadId":"u1","parts":[{"partNumber":1,"checksumSha256":"c1","etag":"\"e1\""}]}"#
        );
        assert_eq!(abort_body("s/h", "u1"), r#"{"key":"s/h","uploadId":"u1"}"#);
    }

    #[test]
    fn answers_are_read_and_checked() {
        let created = parse_created(
            r#"{"uploadId":"u1","partSize":8388608,"partCount":3,"expiresAt":"x"}"#,
            SIZE,
        );
        assert_eq!(created, Ok(Resume::new("u1".into(), MIN_PART)));
        for bad in [
            r#"{"uploadId":"u 1","partSize":8388608}"#,
            r#"{"uploadId":"","partSize":8388608}"#,
            r#"{"uploadId":"u1","partSize":0}"#,
            r#"{"uploadId":"u1","partSize":1}"#,
            "<html>",
        ] {
            let size = if bad.contains(":1}") {
                SIZE * 1000
            } else {
                SIZE
            };
            assert!(
                matches!(parse_created(bad, size), Err(Failure::Protocol { .. })),
                "{bad}"
            );
        }
        let signed = parse_signed_parts(
            r#"{"parts":[{"partNumber":2,"method":"PUT","url":"/f?p=2"},{"partNumber":1,"url":"https://s3/b?p=1","headers":{"x-amz-checksum-sha256":"c1"}}],"expiresAt":"x"}"#,
            "http://srv/api",
            &[1, 2],
        )
        .unwrap();
        assert_eq!(signed[0].url, "https://s3/b?p=1");
        assert_eq!(
            signed[0].headers,
            vec![("x-amz-checksum-sha256".to_string(), "c1".to_string())]
        );
        assert_eq!(signed[1].url, "http://srv/f?p=2");
        assert_eq!(signed[1].method, "PUT");
        assert!(parse_signed_parts(r#"{"parts":[]}"#, "http://srv", &[1]).is_err());
    }

    #[test]
    fn statuses_that_change_the_plan() {
        assert!(unsupported(404) && unsupported(405) && unsupported(501));
        assert!(!unsupported(401) && !unsupported(500) && !unsupported(413));
        assert!(upload_lost(404) && upload_lost(400));
        assert!(!upload_lost(422) && !upload_lost(503) && !upload_lost(403));
    }
}
