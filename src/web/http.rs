//! HTTP through the global scope's `fetch` (and `XMLHttpRequest` for uploads, the one browser
//! API that reports upload progress without streaming request bodies, which need HTTP/2).
//!
//! Every call has a timeout and can be aborted; failures come back classified as
//! [`Failure`] (no network, timeout, cancelled) or as the response's status and text for the
//! caller to classify. Nothing here knows the protocol: see `crate::runtime::remote`.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::core::Failure;

#[wasm_bindgen(module = "/src/web/http.js")]
extern "C" {
    /// A request in flight: `done` resolves (never rejects) with a [`Raw`] answer.
    pub type Call;
    #[wasm_bindgen(method, getter)]
    fn done(this: &Call) -> js_sys::Promise;
    /// Aborts the request; its answer becomes `cancelled` (unless it already timed out).
    #[wasm_bindgen(method)]
    pub fn abort(this: &Call);

    #[wasm_bindgen(js_name = keepalivePost)]
    fn keepalive_post(url: &str, headers: &js_sys::Object, body: &str, credentials: bool);
    #[wasm_bindgen(js_name = httpText)]
    fn http_text(
        method: &str,
        url: &str,
        headers: &js_sys::Object,
        body: Option<String>,
        credentials: bool,
        timeout_ms: u32,
    ) -> Call;
    #[wasm_bindgen(js_name = httpStream)]
    fn http_stream(url: &str, headers: &js_sys::Object, credentials: bool, timeout_ms: u32)
        -> Call;
    #[wasm_bindgen(js_name = xhrSend)]
    fn xhr_send(
        method: &str,
        url: &str,
        headers: &js_sys::Object,
        body: &web_sys::Blob,
        credentials: bool,
        on_progress: &js_sys::Function,
    ) -> Call;
    /// What `done` resolves with: an answer (`status`, `retryAfter`, `text`, and for streams
    /// `body`, `length` and `contentRange`) or a failure (`failure`: `timeout`, `cancelled` or
    /// `offline`, with an optional `message`).
    type Answer;
    #[wasm_bindgen(method, getter)]
    fn status(this: &Answer) -> Option<u16>;
    #[wasm_bindgen(method, getter = retryAfter)]
    fn retry_after(this: &Answer) -> Option<String>;
    #[wasm_bindgen(method, getter)]
    fn text(this: &Answer) -> Option<String>;
    #[wasm_bindgen(method, getter)]
    fn body(this: &Answer) -> Option<web_sys::ReadableStream>;
    #[wasm_bindgen(method, getter)]
    fn length(this: &Answer) -> Option<f64>;
    #[wasm_bindgen(method, getter = contentRange)]
    fn content_range(this: &Answer) -> Option<String>;
    #[wasm_bindgen(method, getter)]
    fn etag(this: &Answer) -> Option<String>;
    #[wasm_bindgen(method, getter)]
    fn failure(this: &Answer) -> Option<String>;
    #[wasm_bindgen(method, getter)]
    fn message(this: &Answer) -> Option<String>;

    #[wasm_bindgen(js_name = sseOpen)]
    fn sse_open(
        url: &str,
        headers: &js_sys::Object,
        credentials: bool,
        on_message: &js_sys::Function,
    ) -> Call;
}

/// Where and how to send requests: extra headers (the bearer token among them) and whether
/// cookies go along.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub headers: Vec<(String, String)>,
    pub credentials: bool,
    pub timeout_ms: u32,
}

impl Endpoint {
    fn headers_with(&self, extra: &[(String, String)]) -> js_sys::Object {
        let o = js_sys::Object::new();
        for (k, v) in self.headers.iter().chain(extra) {
            let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
        }
        o
    }
}

/// Sends a POST that outlives the page (`fetch` with `keepalive`), best effort: nothing
/// reports whether it arrived.
pub fn send_keepalive(endpoint: &Endpoint, url: &str, body: &str) {
    let json = [("content-type".to_string(), "application/json".to_string())];
    keepalive_post(
        url,
        &endpoint.headers_with(&json),
        body,
        endpoint.credentials,
    );
}

/// A response as received: its status, `Retry-After` and text (or body stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
}

fn failure_of(kind: &str, message: Option<String>) -> Failure {
    match kind {
        "timeout" => Failure::Timeout,
        "cancelled" => Failure::Cancelled,
        "offline" => Failure::Offline,
        other => Failure::Protocol {
            message: message.unwrap_or_else(|| other.to_string()),
        },
    }
}

async fn settle(call: &Call) -> Result<(Response, Answer), Failure> {
    let value = JsFuture::from(call.done())
        .await
        .map_err(|e| Failure::Protocol {
            message: format!("{e:?}"),
        })?;
    let answer: Answer = value.unchecked_into();
    if let Some(kind) = answer.failure() {
        return Err(failure_of(&kind, answer.message()));
    }
    Ok((
        Response {
            status: answer.status().unwrap_or(0),
            retry_after: answer.retry_after(),
            text: answer.text().unwrap_or_default(),
        },
        answer,
    ))
}

/// A request whose whole answer is text (JSON calls). `body` is sent as `application/json`.
pub struct TextRequest {
    call: Call,
}

impl TextRequest {
    pub fn start(endpoint: &Endpoint, method: &str, url: &str, body: Option<String>) -> Self {
        let json = [("content-type".to_string(), "application/json".to_string())];
        let extra: &[(String, String)] = if body.is_some() { &json } else { &[] };
        TextRequest {
            call: http_text(
                method,
                url,
                &endpoint.headers_with(extra),
                body,
                endpoint.credentials,
                endpoint.timeout_ms,
            ),
        }
    }

    pub fn abort(&self) {
        self.call.abort();
    }

    pub async fn response(&self) -> Result<Response, Failure> {
        settle(&self.call).await.map(|(r, _)| r)
    }
}

/// A GET whose body is read as a stream (downloads).
pub struct StreamRequest {
    call: Call,
}

/// A response whose body is still to be read.
pub struct StreamResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Set for a successful response (the error text is in `text` otherwise).
    pub body: Option<web_sys::ReadableStream>,
    pub length: Option<u64>,
    /// `Content-Range`, when the answer has one and CORS lets it be read.
    pub content_range: Option<String>,
    pub text: String,
}

impl StreamRequest {
    pub fn start(endpoint: &Endpoint, url: &str, headers: &[(String, String)]) -> Self {
        StreamRequest {
            call: http_stream(
                url,
                &endpoint.headers_with(headers),
                endpoint.credentials,
                endpoint.timeout_ms,
            ),
        }
    }

    pub fn abort(&self) {
        self.call.abort();
    }

    pub async fn response(&self) -> Result<StreamResponse, Failure> {
        let (r, answer) = settle(&self.call).await?;
        Ok(StreamResponse {
            status: r.status,
            retry_after: r.retry_after,
            body: answer.body(),
            length: answer.length().map(|n| n as u64),
            content_range: answer.content_range(),
            text: r.text,
        })
    }
}

/// An upload of a blob with progress (`on_progress(loaded, total)`), through XHR.
pub struct Upload {
    call: Call,
    _on_progress: Closure<dyn FnMut(f64, f64)>,
}

impl Upload {
    pub fn start(
        endpoint: &Endpoint,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &web_sys::Blob,
        on_progress: Box<dyn FnMut(f64, f64)>,
    ) -> Self {
        // Boxed by the callers: one instance of this and of the closure glue for all of them.
        let on_progress = Closure::wrap(on_progress);
        // Signed URLs carry their own authorization: only the signer's headers go along.
        let plain = Endpoint {
            headers: Vec::new(),
            ..endpoint.clone()
        };
        let call = xhr_send(
            method,
            url,
            &plain.headers_with(headers),
            body,
            endpoint.credentials,
            on_progress.as_ref().unchecked_ref(),
        );
        Upload {
            call,
            _on_progress: on_progress,
        }
    }

    pub fn abort(&self) {
        self.call.abort();
    }

    pub async fn response(&self) -> Result<Response, Failure> {
        settle(&self.call).await.map(|(r, _)| r)
    }

    /// The answer with its `ETag` (a multipart part's), once it is there.
    pub async fn etag(&self) -> Result<(Response, Option<String>), Failure> {
        settle(&self.call).await.map(|(r, a)| (r, a.etag()))
    }
}

/// A server-sent events stream read through `fetch` (so it can carry the bearer token, which
/// `EventSource` cannot). `on_message(event, data)` runs for every message.
pub struct EventStream {
    call: Call,
    _on_message: Closure<dyn FnMut(String, String)>,
}

impl EventStream {
    pub fn open(
        endpoint: &Endpoint,
        url: &str,
        on_message: impl FnMut(String, String) + 'static,
    ) -> Self {
        let on_message = Closure::<dyn FnMut(String, String)>::new(on_message);
        let call = sse_open(
            url,
            &endpoint.headers_with(&[]),
            endpoint.credentials,
            on_message.as_ref().unchecked_ref(),
        );
        EventStream {
            call,
            _on_message: on_message,
        }
    }

    pub fn abort(&self) {
        self.call.abort();
    }

    /// Resolves when the stream ends: with the response when the server refused it or closed
    /// it, with the failure when the network dropped it.
    pub async fn closed(&self) -> Result<Response, Failure> {
        settle(&self.call).await.map(|(r, _)| r)
    }
}
