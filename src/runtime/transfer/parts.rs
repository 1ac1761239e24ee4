//! A large upload in parts (`runtime::multipart` decides; this performs): create the upload or
//! take the one an earlier attempt left, then, [`PARALLEL`] parts at a time, checksum them,
//! sign them in one call and `PUT` them at once; every finished part is reported as a
//! checkpoint (the engine persists it), so the next attempt, whoever runs it, sends only the
//! missing parts. Then `complete`. A part that fails fails the attempt after its window's
//! other parts finished; the engine retries it under the usual classification, and the retry
//! sends that part alone.

use std::cell::Cell;
use std::rc::Rc;

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
                let answer = call(remote, running, "create", body).await?;
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
async fn send_parts(
    job: &TransferJob,
    remote: &RemoteConfig,
    blob: &web_sys::Blob,
    running: &Running,
    report: &Reporter,
    r: &mut Resume,
) -> Result<(), Stop> {
    let (task, term, size) = (job.task, job.term, job.size);
    // Bytes of the finished parts, and of each part in flight.
    let moved = Rc::new(Cell::new(r.done_bytes(size)));
    let flying: Rc<[Cell<u64>; PARALLEL]> = Rc::default();
    let progress: Rc<dyn Fn()> = {
        let (moved, flying, report) = (moved.clone(), flying.clone(), report.clone());
        Rc::new(move || {
            report(TransferReport::Progress {
                task,
                term,
                loaded: moved.get() + flying.iter().map(Cell::get).sum::<u64>(),
                total: size,
                resume: None,
            })
        })
    };
    progress();
    for window in r.missing(size).chunks(PARALLEL) {
        let slice = |n: u32| {
            let (a, b) = r.range(n, size);
            blob.slice_with_f64_and_f64(a as f64, b as f64)
                .map_err(|e| storage_failure(WebError::from_js("Blob", &e)))
        };
        let mut sums = Vec::with_capacity(window.len());
        for &n in window {
            sums.push((n, part_checksum(&slice(n)?).await.map_err(storage_failure)?));
        }
        if running.aborted.get() {
            return Err(Stop::Failed(Failure::Cancelled));
        }
        let body = multipart::sign_body(&job.key, &r.upload_id, &sums);
        let answer = call(remote, running, "sign", body).await?;
        if multipart::upload_lost(answer.status) {
            return Err(Stop::Lost);
        }
        remote::check_status(answer.status, answer.retry_after.as_deref())?;
        let signed = multipart::parse_signed_parts(&answer.text, &remote.base_url, window)?;
        let mut uploads = Vec::with_capacity(window.len());
        for (slot, s) in signed.iter().enumerate() {
            let (flying, progress) = (flying.clone(), progress.clone());
            uploads.push(Rc::new(Upload::start(
                &blob_endpoint(remote),
                &s.method,
                &s.url,
                &s.headers,
                &slice(window[slot])?,
                Box::new(move |loaded, _| {
                    flying[slot].set(loaded as u64);
                    progress();
                }),
            )));
        }
        let all = uploads.clone();
        running.track(Box::new(move || all.iter().for_each(|u| u.abort())));
        // Every part of the window is awaited and the finished ones recorded before a failure
        // stops the attempt: the retry sends only what failed.
        let mut first_failure = None;
        for (slot, (upload, (number, checksum))) in uploads.iter().zip(sums).enumerate() {
            let answer = upload.etag().await;
            flying[slot].set(0);
            match answer
                .map_err(Stop::Failed)
                .and_then(|(a, etag)| finished(a, etag))
            {
                Ok(etag) => {
                    let (a, b) = r.range(number, size);
                    moved.set(moved.get() + b - a);
                    r.finish(Part {
                        number,
                        checksum,
                        etag,
                    });
                    report(TransferReport::Progress {
                        task,
                        term,
                        loaded: moved.get() + flying.iter().map(Cell::get).sum::<u64>(),
                        total: size,
                        resume: Some(r.to_text()),
                    });
                }
                Err(stop) => {
                    first_failure.get_or_insert(stop);
                }
            }
        }
        progress();
        if let Some(stop) = first_failure {
            return Err(stop);
        }
    }
    Ok(())
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
    running.track(Box::new(move || r.abort()));
    request.response().await
}
