//! A large upload in parts (`runtime::multipart` decides; this performs): create the upload or
//! take the one an earlier attempt left, then send the missing parts in [`PARALLEL`] lanes,
//! each checksumming, signing and `PUT`ting one part after another; every finished part is
//! reported as a checkpoint (the engine persists it), so the next attempt, whoever runs it,
//! sends only the missing parts. Then `complete`. A part that fails fails the attempt after the
//! parts in flight finished; the engine retries it under the usual classification, and the
//! retry sends only the parts still missing.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{blob_endpoint, storage_failure, Reporter, Running};
use crate::core::Failure;
use crate::runtime::multipart::{self, Part, Resume, PARALLEL};
use crate::runtime::protocol::{TransferJob, TransferReport};
use crate::runtime::remote::{self, RemoteConfig};
use crate::web::error::WebError;
use crate::web::hash::part_checksum;
use crate::web::http::{Response, TextRequest, Upload};

/// How an upload in parts ended.
pub(super) enum Parts {
    Done,
    /// The signer has no multipart extension: send the file in one `PUT`.
    Unsupported,
}

/// Why sending the parts stopped.
enum Stop {
    /// The server lost the upload (aborted, swept): start a new one.
    Lost,
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

pub(super) async fn upload_in_parts(
    job: &TransferJob,
    remote: &RemoteConfig,
    blob: &web_sys::Blob,
    running: &Running,
    report: &Reporter,
) -> Result<Parts, Failure> {
    let (task, term, size) = (job.task, job.term, job.size);
    // A new resume text goes with a progress report (`""`: the upload is gone, forget it).
    let checkpoint = |r: Option<&Resume>| {
        report(TransferReport::Progress {
            task,
            term,
            loaded: r.map_or(0, |r| r.done_bytes(size)),
            total: size,
            resume: Some(r.map(Resume::to_text).unwrap_or_default()),
        })
    };
    let mut kept = job
        .resume
        .as_deref()
        .and_then(|text| Resume::parse(text, size));
    // A lost upload starts over once within this attempt; twice is the server's problem.
    for _ in 0..2 {
        let mut r = match kept.take() {
            Some(r) => r,
            None => {
                let body = multipart::create_body(&job.key, size);
                let answer = call(remote, running, 0, "create", body).await?;
                if multipart::unsupported(answer.status) {
                    return Ok(Parts::Unsupported);
                }
                remote::check_status(answer.status, answer.retry_after.as_deref())?;
                let r = multipart::parse_created(&answer.text, size)?;
                checkpoint(Some(&r));
                r
            }
        };
        match send_parts(job, remote, blob, running, report, &mut r).await {
            Ok(()) => {}
            Err(Stop::Lost) => {
                checkpoint(None);
                continue;
            }
            Err(Stop::Failed(f)) => return Err(f),
        }
        let answer = call(
            remote,
            running,
            0,
            "complete",
            multipart::complete_body(&job.key, &r),
        )
        .await?;
        if multipart::upload_lost(answer.status) {
            checkpoint(None);
            continue;
        }
        if answer.status == 422 {
            // The server dropped the upload: the parts do not hash to the key.
            checkpoint(None);
        }
        remote::check_status(answer.status, answer.retry_after.as_deref())?;
        return Ok(Parts::Done);
    }
    Err(Failure::Protocol {
        message: "the server lost the multipart upload twice in a row".into(),
    })
}

/// Sends the parts `r` misses, recording each finished one in `r` and as a checkpoint.
///
/// [`PARALLEL`] lanes each take the next missing part, checksum it, sign it and `PUT` it, one
/// part after another; lanes drift apart, so one checksums while the others upload and the
/// link stays busy (lockstep windows left it idle while a window was checksummed and while its
/// slowest part finished). A lane that fails stops every lane from taking a new part; the parts
/// in flight finish and are recorded first, so the retry sends only what failed.
async fn send_parts(
    job: &TransferJob,
    remote: &RemoteConfig,
    blob: &web_sys::Blob,
    running: &Running,
    report: &Reporter,
    r: &mut Resume,
) -> Result<(), Stop> {
    let (task, term, size) = (job.task, job.term, job.size);
    let missing = r.missing(size);
    // Bytes of the finished parts, and of each part in flight.
    let moved = Rc::new(Cell::new(r.done_bytes(size)));
    let flying: Rc<[Cell<u64>; PARALLEL]> = Rc::default();
    let loaded = {
        let (moved, flying) = (moved.clone(), flying.clone());
        move || moved.get() + flying.iter().map(Cell::get).sum::<u64>()
    };
    let progress: Rc<dyn Fn()> = {
        let (loaded, report) = (loaded.clone(), report.clone());
        Rc::new(move || {
            report(TransferReport::Progress {
                task,
                term,
                loaded: loaded(),
                total: size,
                resume: None,
            })
        })
    };
    progress();
    let lanes = Lanes {
        job,
        remote,
        blob,
        running,
        upload_id: r.upload_id.clone(),
        flying: flying.clone(),
        progress,
    };
    let (next, resume, failure) = (Cell::new(0), RefCell::new(r), RefCell::new(None));
    let lane = |slot: usize| {
        let (lanes, loaded, missing) = (&lanes, &loaded, &missing);
        let (next, resume, failure, moved, flying) = (&next, &resume, &failure, &moved, &flying);
        Box::pin(async move {
            while failure.borrow().is_none() && !running.aborted.get() {
                let Some(&number) = missing.get(next.get()) else {
                    return;
                };
                next.set(next.get() + 1);
                let range = resume.borrow().range(number, size);
                let sent = lanes.send(slot, number, range).await;
                flying[slot].set(0);
                match sent {
                    Ok(part) => {
                        moved.set(moved.get() + range.1 - range.0);
                        resume.borrow_mut().finish(part);
                        report(TransferReport::Progress {
                            task,
                            term,
                            loaded: loaded(),
                            total: size,
                            resume: Some(resume.borrow().to_text()),
                        });
                    }
                    Err(stop) => {
                        failure.borrow_mut().get_or_insert(stop);
                    }
                }
            }
        }) as Pin<Box<dyn Future<Output = ()> + '_>>
    };
    JoinAll((0..PARALLEL).map(lane).map(Some).collect()).await;
    lanes.progress.as_ref()();
    match failure.into_inner() {
        Some(stop) => Err(stop),
        None if running.aborted.get() => Err(Stop::Failed(Failure::Cancelled)),
        None => Ok(()),
    }
}

/// What every lane of [`send_parts`] shares.
struct Lanes<'a> {
    job: &'a TransferJob,
    remote: &'a RemoteConfig,
    blob: &'a web_sys::Blob,
    running: &'a Running,
    upload_id: String,
    flying: Rc<[Cell<u64>; PARALLEL]>,
    progress: Rc<dyn Fn()>,
}

impl Lanes<'_> {
    /// Checksums, signs and `PUT`s part `number` (bytes `range` of the file) in lane `slot`.
    async fn send(&self, slot: usize, number: u32, range: (u64, u64)) -> Result<Part, Stop> {
        let part = self
            .blob
            .slice_with_f64_and_f64(range.0 as f64, range.1 as f64)
            .map_err(|e| storage_failure(WebError::from_js("Blob", &e)))?;
        let checksum = part_checksum(&part).await.map_err(storage_failure)?;
        if self.running.aborted.get() {
            return Err(Stop::Failed(Failure::Cancelled));
        }
        let sums = [(number, checksum)];
        let body = multipart::sign_body(&self.job.key, &self.upload_id, &sums);
        let answer = call(self.remote, self.running, slot, "sign", body).await?;
        if multipart::upload_lost(answer.status) {
            return Err(Stop::Lost);
        }
        remote::check_status(answer.status, answer.retry_after.as_deref())?;
        let signed = multipart::parse_signed_parts(&answer.text, &self.remote.base_url, &[number])?;
        let s = signed.first().ok_or_else(|| Failure::Protocol {
            message: "the multipart sign answer has no URL".into(),
        })?;
        let (flying, progress) = (self.flying.clone(), self.progress.clone());
        let upload = Rc::new(Upload::start(
            &blob_endpoint(self.remote),
            &s.method,
            &s.url,
            &s.headers,
            &part,
            Box::new(move |loaded, _| {
                flying[slot].set(loaded as u64);
                progress();
            }),
        ));
        let tracked = upload.clone();
        self.running
            .track_lane(slot, Box::new(move || tracked.abort()));
        let (answer, etag) = upload.etag().await?;
        let [(number, checksum)] = sums;
        Ok(Part {
            number,
            checksum,
            etag: finished(answer, etag)?,
        })
    }
}

/// Runs futures together until every one is done (this crate has no futures dependency; a
/// wake polls them all, which is fine for a few lanes).
struct JoinAll<'a>(Vec<Option<Pin<Box<dyn Future<Output = ()> + 'a>>>>);

impl Future for JoinAll<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut pending = false;
        for slot in self.0.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// A part's answer: its ETag, or why it failed.
fn finished(answer: Response, etag: Option<String>) -> Result<String, Stop> {
    if answer.status == 404 {
        return Err(Stop::Lost);
    }
    remote::check_status(answer.status, answer.retry_after.as_deref())?;
    etag.filter(|e| !e.is_empty() && !e.contains('\n'))
        .ok_or_else(|| {
            Stop::Failed(Failure::Protocol {
                message: "a part's answer has no readable ETag (CORS must expose it)".into(),
            })
        })
}

/// A multipart call to the signer API; the answer as it is (the caller reads its status).
async fn call(
    remote: &RemoteConfig,
    running: &Running,
    lane: usize,
    name: &str,
    body: String,
) -> Result<Response, Failure> {
    let request = Rc::new(TextRequest::start(
        &remote.endpoint(),
        "POST",
        &remote.multipart_url(name),
        Some(body),
    ));
    let r = request.clone();
    running.track_lane(lane, Box::new(move || r.abort()));
    request.response().await
}
