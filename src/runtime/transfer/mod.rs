//! The leader tab's transfers: the hub hands it jobs (the engine's `StartTransfer`), it runs
//! them through the signer API and reports progress and results back with the job's term.
//!
//! Uploads read the stored blob (OPFS hands out a disk-backed `File`: nothing is loaded into
//! memory) and send it with `XMLHttpRequest` for upload progress. Downloads stream the
//! response body into the byte store, hashing as they write; bytes that do not hash to the
//! expected content are not stored and fail with `integrity`. An aborted job (cancelled,
//! superseded, or leadership lost) aborts its request in flight and reports nothing: the
//! engine already forgot it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::multipart;
use super::protocol::{TransferJob, TransferReport};
use super::remote::{self, RemoteConfig, Signed};
use super::resume::{self, RangeRefused};
use crate::core::{Failure, TransferKind};
use crate::web::bytes::{ByteStore, WriteError};
use crate::web::error::WebError;
use crate::web::http::{Endpoint, StreamRequest, TextRequest, Upload};

mod parts;

use parts::Parts;

thread_local! {
    /// The signer answered `create` as one without the multipart extension.
    static NO_MULTIPART: Cell<bool> = const { Cell::new(false) };
}

/// Where a running job's reports go (to the hub).
pub type Reporter = Rc<dyn Fn(TransferReport)>;

/// A running job: whether it was aborted, and how to abort its requests in flight (one per
/// lane: an upload in parts runs several at once, any other job one).
#[derive(Default)]
struct Running {
    aborted: Cell<bool>,
    abort_requests: RefCell<Vec<Option<Abort>>>,
}

/// Aborts one request in flight.
type Abort = Box<dyn Fn()>;

impl Running {
    fn abort(&self) {
        self.aborted.set(true);
        let requests = std::mem::take(&mut *self.abort_requests.borrow_mut());
        requests.into_iter().flatten().for_each(|abort| abort());
    }

    /// Registers the request in flight (aborted at once if the job already was).
    fn track(&self, abort: Abort) {
        self.track_lane(0, abort);
    }

    /// Registers lane `lane`'s request in flight, in place of its previous one.
    fn track_lane(&self, lane: usize, abort: Abort) {
        if self.aborted.get() {
            return abort();
        }
        let mut requests = self.abort_requests.borrow_mut();
        if requests.len() <= lane {
            requests.resize_with(lane + 1, || None);
        }
        requests[lane] = Some(abort);
    }
}

/// The transfers this tab runs as leader.
#[derive(Default)]
pub struct Transfers {
    /// By task (a few: a list costs less wasm than a map).
    running: RefCell<Vec<(u64, Rc<Running>)>>,
}

impl Transfers {
    /// Starts a job; its reports go to `report`.
    pub fn start(
        self: &Rc<Self>,
        job: TransferJob,
        remote: Rc<RemoteConfig>,
        bytes: Rc<ByteStore>,
        report: Reporter,
    ) {
        let running = Rc::new(Running::default());
        if let Some(old) = self.take(job.task) {
            old.abort();
        }
        self.running.borrow_mut().push((job.task, running.clone()));
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let (task, term) = (job.task, job.term);
            let result = match job.kind {
                TransferKind::Upload => upload(&job, &remote, &bytes, &running, &report).await,
                TransferKind::Download => download(&job, &remote, &bytes, &running, &report)
                    .await
                    .map(Some),
            };
            me.take(task);
            if running.aborted.get() {
                return;
            }
            report(match result {
                Ok(downloaded) => TransferReport::Done {
                    task,
                    term,
                    downloaded,
                },
                Err(failure) => TransferReport::Failed {
                    task,
                    term,
                    failure,
                },
            });
        });
    }

    fn take(&self, task: u64) -> Option<Rc<Running>> {
        let mut running = self.running.borrow_mut();
        let at = running.iter().position(|(t, _)| *t == task)?;
        Some(running.swap_remove(at).1)
    }

    /// Aborts one job.
    pub fn abort(&self, task: u64) {
        if let Some(r) = self.take(task) {
            r.abort();
        }
    }

    /// Aborts every job (leadership lost, tab closing).
    pub fn abort_all(&self) {
        for (_, r) in self.running.borrow_mut().drain(..) {
            r.abort();
        }
    }
}

/// Asks the signer for a URL.
async fn sign(
    remote: &RemoteConfig,
    running: &Running,
    url: &str,
    body: String,
    default_method: &str,
) -> Result<Signed, Failure> {
    let request = Rc::new(TextRequest::start(
        &remote.endpoint(),
        "POST",
        url,
        Some(body),
    ));
    let r = request.clone();
    running.track(Box::new(move || r.abort()));
    let answer = request.response().await?;
    remote::check_status(answer.status, answer.retry_after.as_deref())?;
    remote::parse_signed(&answer.text, &remote.base_url, default_method)
}

/// Signed URLs carry their own authorization: API headers (the bearer token) must not go
/// along (S3 refuses a second authorization).
fn blob_endpoint(remote: &RemoteConfig) -> Endpoint {
    Endpoint {
        headers: Vec::new(),
        ..remote.endpoint()
    }
}

async fn upload(
    job: &TransferJob,
    remote: &RemoteConfig,
    bytes: &ByteStore,
    running: &Running,
    report: &Reporter,
) -> Result<Option<crate::core::ContentHash>, Failure> {
    let blob = bytes.read(&job.hash).await.map_err(storage_failure)?;
    if job.size >= multipart::THRESHOLD && !NO_MULTIPART.with(Cell::get) {
        match parts::upload_in_parts(job, remote, &blob, running, report).await? {
            Parts::Done => return Ok(None),
            // Learned once per leader tab: later uploads go in one `PUT` at once.
            Parts::Unsupported => NO_MULTIPART.with(|n| n.set(true)),
        }
    }
    let body = remote::sign_upload_body(&job.key, &job.mime_type, job.size);
    let signed = sign(remote, running, &remote.sign_upload_url(), body, "PUT").await?;
    let (task, term) = (job.task, job.term);
    let progress = report.clone();
    let upload = Rc::new(Upload::start(
        &blob_endpoint(remote),
        &signed.method,
        &signed.url,
        &signed.headers,
        &blob,
        Box::new(move |loaded, total| {
            progress(TransferReport::Progress {
                task,
                term,
                loaded: loaded as u64,
                total: total as u64,
                resume: None,
            })
        }),
    ));
    let u = upload.clone();
    running.track(Box::new(move || u.abort()));
    let answer = upload.response().await?;
    remote::check_status(answer.status, answer.retry_after.as_deref())?;
    Ok(None)
}

async fn download(
    job: &TransferJob,
    remote: &RemoteConfig,
    bytes: &ByteStore,
    running: &Running,
    report: &Reporter,
) -> Result<crate::core::ContentHash, Failure> {
    let body = remote::key_body(&job.key);
    let signed = sign(remote, running, &remote.sign_download_url(), body, "GET").await?;
    // What an interrupted attempt left: ask for the rest only (see `runtime::resume`).
    let held = if job.size >= resume::MIN_RESUMED {
        bytes.held(&job.hash).await
    } else {
        0
    };
    let range = resume::range_header(held, job.size);
    let asked = if range.is_some() { held } else { 0 };
    let mut headers = signed.headers.clone();
    headers.extend(range);
    let request = Rc::new(StreamRequest::start(
        &blob_endpoint(remote),
        &signed.url,
        &headers,
    ));
    let r = request.clone();
    running.track(Box::new(move || r.abort()));
    let answer = request.response().await?;
    let from = match resume::body_offset(
        asked,
        answer.status,
        answer.retry_after.as_deref(),
        answer.content_range.as_deref(),
        answer.length,
        job.size,
    ) {
        Ok(from) => from,
        Err(RangeRefused::Failed(f)) => return Err(f),
        Err(RangeRefused::Mismatch(f)) => {
            bytes.discard_partial(&job.hash).await;
            return Err(f);
        }
    };
    let stream = answer.body.ok_or_else(|| Failure::Protocol {
        message: "download answer without a body".into(),
    })?;
    let total = job.size.max(answer.length.map_or(0, |n| from + n));
    let (task, term) = (job.task, job.term);
    let report = report.clone();
    let progress = Rc::new(move |loaded: u64| {
        report(TransferReport::Progress {
            task,
            term,
            loaded,
            total: total.max(loaded),
            resume: None,
        })
    });
    match bytes.write_stream(&stream, job.hash, from, progress).await {
        Ok(hash) => Ok(hash),
        Err(WriteError::Mismatch { actual, .. }) => Err(Failure::Integrity {
            actual: actual.to_hex(),
        }),
        Err(WriteError::Web(e)) => Err(match e {
            WebError::Quota { .. } | WebError::Unavailable { .. } | WebError::Version { .. } => {
                storage_failure(e)
            }
            // The body broke off (connection lost, server gone): worth another attempt.
            _ => Failure::Timeout,
        }),
    }
}

fn storage_failure(e: WebError) -> Failure {
    Failure::Storage {
        quota: matches!(e, WebError::Quota { .. }),
        message: e.to_string(),
    }
}
