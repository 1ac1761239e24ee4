//! The client's side of the server protocol (`docs/PROTOCOL.md`): the remote settings, the
//! URLs and request bodies of every call, and the reading of every answer into events or a
//! typed [`Failure`]. Pure (no browser API), so every rule is tested natively; the hub and the
//! leader tab send what this builds through `crate::web::http`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

use crate::core::event::{ClientEvent, ConfirmedEvent, WireEnvelope};
use crate::core::{Failure, Seq, StoreId};

/// Requests without an answer for this long fail with `timeout` (transfers count only the
/// wait for the response head; their bodies are watched by the engine's stall timer).
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;

/// Where the server is and how to talk to it, as the app configured it (`remote` option),
/// with URLs already made absolute by the tab (a SharedWorker resolves relative URLs against
/// its script, not the page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteConfig {
    /// Base of the signer API (livestore-filesync's `signerBaseUrl`), no trailing slash.
    pub base_url: String,
    /// Base of the event sync API (defaults to `base_url`).
    pub sync_url: String,
    /// Sent as `Authorization: Bearer <token>` on API calls (not on signed blob URLs).
    pub auth_token: Option<String>,
    /// Extra headers on API calls.
    pub headers: BTreeMap<String, String>,
    /// Send cookies with API calls (`credentials: 'include'`).
    pub include_credentials: bool,
    pub request_timeout_ms: u32,
}

impl RemoteConfig {
    /// Settings with the defaults: no token, no extra headers, no cookies, 30 s timeout.
    pub fn new(base_url: &str, sync_url: Option<&str>) -> RemoteConfig {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        RemoteConfig {
            base_url: trim(base_url),
            sync_url: trim(sync_url.unwrap_or(base_url)),
            auth_token: None,
            headers: BTreeMap::new(),
            include_credentials: false,
            request_timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Headers of every API call.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(t) = &self.auth_token {
            h.push(("authorization".into(), format!("Bearer {t}")));
        }
        h
    }

    /// How `crate::web::http` sends API calls with these settings.
    #[cfg(target_arch = "wasm32")]
    pub fn endpoint(&self) -> crate::web::http::Endpoint {
        crate::web::http::Endpoint {
            headers: self.headers(),
            credentials: self.include_credentials,
            timeout_ms: self.request_timeout_ms,
        }
    }

    pub fn health_url(&self) -> String {
        format!("{}/health", self.base_url)
    }
    pub fn sign_upload_url(&self) -> String {
        format!("{}/v1/sign/upload", self.base_url)
    }
    pub fn sign_download_url(&self) -> String {
        format!("{}/v1/sign/download", self.base_url)
    }
    pub fn delete_url(&self) -> String {
        format!("{}/v1/delete", self.base_url)
    }
    /// A multipart call: `create`, `sign`, `complete` or `abort` (docs/PROTOCOL.md).
    pub fn multipart_url(&self, call: &str) -> String {
        format!("{}/v1/multipart/{call}", self.base_url)
    }
    /// Push endpoint (store ids are URL-safe by construction).
    pub fn events_url(&self, store: &StoreId) -> String {
        format!("{}/v1/stores/{store}/events", self.sync_url)
    }
    pub fn pull_url(&self, store: &StoreId, after: Seq, limit: usize) -> String {
        format!("{}?after={}&limit={limit}", self.events_url(store), after.0)
    }
    pub fn live_url(&self, store: &StoreId, after: Seq) -> String {
        format!("{}/live?after={}", self.events_url(store), after.0)
    }
}

/// The app's `remote` option: `false`, `null` or absent is local-only; an object configures
/// the server (read by [`parse_options`]).
#[derive(Debug, Clone, Default)]
pub enum RemoteOption {
    #[default]
    Off,
    On(RemoteOptions),
}

impl<'de> Deserialize<'de> for RemoteOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RemoteOption, D::Error> {
        struct OptionVisitor;
        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = RemoteOption;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("false or an object like { baseUrl: '/api' }")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<RemoteOption, E> {
                match on {
                    false => Ok(RemoteOption::Off),
                    true => Err(E::invalid_value(Unexpected::Bool(true), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<RemoteOption, E> {
                Ok(RemoteOption::Off)
            }
            fn visit_none<E: de::Error>(self) -> Result<RemoteOption, E> {
                Ok(RemoteOption::Off)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RemoteOption, A::Error> {
                RemoteOptions::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RemoteOption::On)
            }
        }
        d.deserialize_any(OptionVisitor)
    }
}

/// The `remote` option's object (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteOptions {
    base_url: Option<String>,
    sync_url: Option<String>,
    auth_token: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    include_credentials: Option<bool>,
    request_timeout_ms: Option<u32>,
}

/// Where the signer API is when the app does not say (livestore-filesync's default).
pub const DEFAULT_BASE_URL: &str = "/api";

/// Reads the app's `remote` option: `false` (or absent) is local-only, an object configures
/// the server. `absolute` makes a URL absolute against the page (`None`: not a URL).
pub fn parse_options(
    option: &RemoteOption,
    absolute: impl Fn(&str) -> Option<String>,
) -> Result<Option<RemoteConfig>, String> {
    let o = match option {
        RemoteOption::Off => return Ok(None),
        RemoteOption::On(o) => o,
    };
    let url = |name: &str, u: &str| {
        absolute(u).ok_or_else(|| format!("remote.{name} is not a valid URL: {u:?}"))
    };
    let base = url("baseUrl", o.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))?;
    let sync = match &o.sync_url {
        Some(u) => Some(url("syncUrl", u)?),
        None => None,
    };
    let mut c = RemoteConfig::new(&base, sync.as_deref());
    c.auth_token = o.auth_token.clone().filter(|t| !t.is_empty());
    c.headers = o.headers.clone().unwrap_or_default();
    c.include_credentials = o.include_credentials.unwrap_or(false);
    if let Some(ms) = o.request_timeout_ms {
        if ms == 0 {
            return Err("remote.requestTimeoutMs must be positive".into());
        }
        c.request_timeout_ms = ms;
    }
    Ok(Some(c))
}

/// A signed blob URL (signer API answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `PUT` or `POST` for uploads, `GET` for downloads.
    pub method: String,
    /// Absolute.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A signed URL as the signer sends it (alone, or as one part of a multipart `sign`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignedWire {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// A multipart `sign` answer's part (`runtime::multipart`).
    #[serde(default)]
    pub(crate) part_number: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignUploadWire<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    content_type: &'a str,
    content_length: u64,
}

#[derive(Serialize)]
struct KeyWire<'a> {
    key: &'a str,
}

#[derive(Serialize)]
struct PushWire {
    events: Vec<WireEnvelope>,
}

#[derive(Deserialize)]
struct EventsWire {
    events: Vec<WireEnvelope>,
    #[serde(default, rename = "hasMore")]
    has_more: bool,
}

/// Body of `POST /v1/sign/upload`.
pub fn sign_upload_body(key: &str, content_type: &str, length: u64) -> String {
    json(&SignUploadWire {
        key,
        content_type,
        content_length: length,
    })
}

/// Body of `POST /v1/sign/download` and `POST /v1/delete`.
pub fn key_body(key: &str) -> String {
    json(&KeyWire { key })
}

/// Body of a push.
pub fn push_body(events: &[ClientEvent]) -> String {
    json(&PushWire {
        events: events.iter().map(ClientEvent::to_wire).collect(),
    })
}

/// The most a parting push may carry: browsers allow 64 KiB of `keepalive` request bodies in
/// flight per page, and the page may have its own.
pub const PARTING_BODY_LIMIT: usize = 60 * 1024;

/// An event's envelope as a push carries it (what tabs keep for the parting push).
pub fn envelope_json(e: &ClientEvent) -> String {
    json(&e.to_wire())
}

/// The push a closing page sends with `keepalive` (it outlives the page), from the envelopes of
/// the unconfirmed events (oldest first, as [`envelope_json`] writes them): the longest prefix
/// whose body fits in `limit` bytes, exactly as [`push_body`] would write it. `None` when there
/// is nothing to send or the first event alone is too large (the next session pushes it).
pub fn parting_body(envelopes: &[&str], limit: usize) -> Option<String> {
    let mut size = r#"{"events":[]}"#.len();
    let mut fits = 0;
    for (i, e) in envelopes.iter().enumerate() {
        size += e.len() + usize::from(i > 0);
        if size > limit {
            break;
        }
        fits = i + 1;
    }
    (fits > 0).then(|| format!(r#"{{"events":[{}]}}"#, envelopes[..fits].join(",")))
}

/// What the tabs' copy of the unconfirmed events was last told: events numbered below `below`
/// are gone (confirmed), and every event numbered below `upto` was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartingSent {
    pub below: u64,
    pub upto: u64,
}

/// What to tell the tabs about the durable unconfirmed events (`durable`, oldest first) since
/// `sent`: the new `below` and the events not sent yet; `None` when nothing changed. Only the
/// difference travels, so a burst of saves costs one small message per change.
pub fn parting_delta(
    sent: PartingSent,
    durable: &[ClientEvent],
) -> Option<(PartingSent, &[ClientEvent])> {
    let below = durable.first().map_or(sent.upto, |e| e.id.n);
    let new_from = durable.partition_point(|e| e.id.n < sent.upto);
    let new = &durable[new_from..];
    let upto = new.last().map_or(sent.upto, |e| e.id.n + 1);
    let next = PartingSent { below, upto };
    (next != sent).then_some((next, new))
}

fn json<T: Serialize>(v: &T) -> String {
    // Plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// `Retry-After` in milliseconds: delay-seconds only (an HTTP date is ignored: the retry
/// policy's own backoff applies).
pub fn retry_after_ms(header: Option<&str>) -> Option<u64> {
    header?.trim().parse::<u64>().ok().map(|s| s * 1000)
}

/// The failure a non-2xx status means; `Ok` for 2xx.
pub fn check_status(status: u16, retry_after: Option<&str>) -> Result<(), Failure> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Failure::from_status(status, retry_after_ms(retry_after)))
    }
}

pub(crate) fn protocol(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Protocol {
        message: format!("{what}: {e}"),
    }
}

/// Reads a signer answer; a relative `url` is resolved against `base` (the signer's base URL).
pub fn parse_signed(text: &str, base: &str, default_method: &str) -> Result<Signed, Failure> {
    let w: SignedWire = serde_json::from_str(text).map_err(|e| protocol("signer answer", e))?;
    signed(w, base, default_method)
}

/// A signed URL read from its wire form (see [`parse_signed`]).
pub(crate) fn signed(w: SignedWire, base: &str, default_method: &str) -> Result<Signed, Failure> {
    let method = w
        .method
        .unwrap_or_else(|| default_method.to_string())
        .to_ascii_uppercase();
    if !matches!(method.as_str(), "PUT" | "POST" | "GET") {
        return Err(protocol("signer answer", format!("method {method:?}")));
    }
    Ok(Signed {
        method,
        url: resolve(base, &w.url).ok_or_else(|| protocol("signer answer", "url"))?,
        headers: w.headers.unwrap_or_default().into_iter().collect(),
    })
}

/// `url` made absolute against the absolute URL `base`: absolute URLs as they are, `/path`
/// on base's origin, anything else under base's directory.
pub fn resolve(base: &str, url: &str) -> Option<String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Some(url.to_string());
    }
    let scheme_end = base.find("://")? + 3;
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if url.starts_with("//") {
        return Some(format!("{}{url}", &base[..scheme_end - 2]));
    }
    if url.starts_with('/') {
        return Some(format!("{}{url}", &base[..origin_end]));
    }
    if url.is_empty() {
        return None;
    }
    Some(format!("{}/{url}", base.trim_end_matches('/')))
}

fn confirmed(events: Vec<WireEnvelope>) -> Result<Vec<ConfirmedEvent>, Failure> {
    events
        .iter()
        .enumerate()
        .map(|(i, w)| {
            ConfirmedEvent::from_wire(w).map_err(|e| protocol(&format!("events[{i}]"), e))
        })
        .collect()
}

/// Reads a push answer: the pushed events as the server stored them.
pub fn parse_pushed(text: &str, pushed: usize) -> Result<Vec<ConfirmedEvent>, Failure> {
    let w: EventsWire = serde_json::from_str(text).map_err(|e| protocol("push answer", e))?;
    if w.events.len() != pushed {
        return Err(protocol(
            "push answer",
            format!("{} events for {pushed} pushed", w.events.len()),
        ));
    }
    confirmed(w.events)
}

/// Reads a pull answer: a page of events and whether more follow.
pub fn parse_pulled(text: &str) -> Result<(Vec<ConfirmedEvent>, bool), Failure> {
    let w: EventsWire = serde_json::from_str(text).map_err(|e| protocol("pull answer", e))?;
    Ok((confirmed(w.events)?, w.has_more))
}

/// A message of the live channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Connected: the server's latest seq (the client pulls to catch up).
    Ready,
    Events(Vec<ConfirmedEvent>),
    /// Anything else (future message kinds): ignored.
    Other,
}

/// Reads one server-sent event of the live channel.
pub fn parse_live(event: &str, data: &str) -> Result<Live, Failure> {
    match event {
        "ready" => Ok(Live::Ready),
        "events" => {
            let w: EventsWire =
                serde_json::from_str(data).map_err(|e| protocol("live events", e))?;
            Ok(Live::Events(confirmed(w.events)?))
        }
        _ => Ok(Live::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{FileCreated, FileEvent, FileInfo};
    use crate::core::{ClientId, ContentHash, EventId, FileId, Millis, RemoteKey};

    fn config() -> RemoteConfig {
        let mut c = RemoteConfig::new("https://app.example/api/", None);
        c.auth_token = Some("t0k".into());
        c.headers.insert("x-app".into(), "1".into());
        c
    }

    fn event(n: u64) -> ClientEvent {
        ClientEvent {
            id: EventId {
                client: ClientId::new("c1").unwrap(),
                n,
            },
            event: FileEvent::Created(FileCreated {
                id: FileId::new(format!("f{n}")).unwrap(),
                path: format!("files/f{n}"),
                content_hash: ContentHash::of(b"x"),
                metadata_json: None,
                created_at: Millis(1),
                updated_at: Millis(1),
                info: FileInfo {
                    name: "a.txt".into(),
                    mime_type: "text/plain".into(),
                    size: 1,
                },
            }),
        }
    }

    #[test]
    fn options_are_read_with_defaults() {
        let page = |u: &str| resolve("https://app.example/page", u);
        let read = |v: serde_json::Value| {
            let option: RemoteOption = serde_json::from_value(v).map_err(|e| e.to_string())?;
            parse_options(&option, page)
        };
        assert_eq!(read(serde_json::json!(false)), Ok(None));
        assert_eq!(read(serde_json::Value::Null), Ok(None));
        let c = read(serde_json::json!({})).unwrap().unwrap();
        assert_eq!(c.base_url, "https://app.example/api");
        assert_eq!(c.sync_url, c.base_url);
        assert_eq!(c.request_timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(c.headers().is_empty());
        let c = read(
            serde_json::json!({"baseUrl": "https://s/api", "syncUrl": "/sync", "authToken": "t",
                "headers": {"x": "y"}, "includeCredentials": true, "requestTimeoutMs": 5}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.sync_url, "https://app.example/sync");
        assert_eq!((c.include_credentials, c.request_timeout_ms), (true, 5));
        assert_eq!(c.headers().len(), 2);
        for bad in [
            serde_json::json!(true),
            serde_json::json!("https://s"),
            serde_json::json!({"baseURL": "/x"}),
            serde_json::json!({"requestTimeoutMs": 0}),
            serde_json::json!({"baseUrl": ""}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }

    /// serde_json is patched so that these messages do not link float formatting into the
    /// wasm (vendor/serde_json/PATCHED.md); they stay serde's.
    #[test]
    fn wrong_types_are_named_as_serde_names_them() {
        let message = |text: &str| match parse_signed(text, "https://s/", "PUT") {
            Err(Failure::Protocol { message }) => message,
            other => panic!("{text}: {other:?}"),
        };
        for (text, says) in [
            (
                r#"{"url": true}"#,
                "invalid type: boolean `true`, expected a string",
            ),
            (
                r#"{"url": 7}"#,
                "invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"url": 1.5}"#,
                "invalid type: floating point `1.5`, expected a string",
            ),
            (
                r#"{"url": []}"#,
                "invalid type: sequence, expected a string",
            ),
            (
                r#"{"url": "u", "partNumber": -1}"#,
                "invalid value: integer `-1`, expected u32",
            ),
            (
                r#"{"url": "u", "partNumber": "1"}"#,
                "invalid type: string \"1\", expected u32",
            ),
        ] {
            let got = message(text);
            assert!(
                got.starts_with(&format!("signer answer: {says} at ")),
                "{got}"
            );
        }
    }

    #[test]
    fn urls_and_headers() {
        let c = config();
        let s = StoreId::new("s1").unwrap();
        assert_eq!(c.health_url(), "https://app.example/api/health");
        assert_eq!(
            c.sign_upload_url(),
            "https://app.example/api/v1/sign/upload"
        );
        assert_eq!(
            c.pull_url(&s, Seq(7), 256),
            "https://app.example/api/v1/stores/s1/events?after=7&limit=256"
        );
        assert_eq!(
            c.live_url(&s, Seq(0)),
            "https://app.example/api/v1/stores/s1/events/live?after=0"
        );
        assert!(c
            .headers()
            .contains(&("authorization".into(), "Bearer t0k".into())));
        let split = RemoteConfig::new("https://a/api", Some("https://b/sync/"));
        assert_eq!(split.events_url(&s), "https://b/sync/v1/stores/s1/events");
    }

    #[test]
    fn bodies_follow_the_signer_contract() {
        let key = RemoteKey::for_content(&StoreId::new("s1").unwrap(), &ContentHash::of(b"x"));
        let v: serde_json::Value =
            serde_json::from_str(&sign_upload_body(key.as_str(), "image/png", 42)).unwrap();
        assert_eq!(v["key"], key.as_str());
        assert_eq!(v["contentType"], "image/png");
        assert_eq!(v["contentLength"], 42);
        let v: serde_json::Value =
            serde_json::from_str(&sign_upload_body(key.as_str(), "", 1)).unwrap();
        assert!(v.get("contentType").is_none());
        assert_eq!(key_body(key.as_str()), format!("{{\"key\":\"{key}\"}}"));
        let v: serde_json::Value = serde_json::from_str(&push_body(&[event(1)])).unwrap();
        assert_eq!(v["events"][0]["name"], "v1.FileCreated");
        assert!(v["events"][0].get("seq").is_none());
    }

    #[test]
    fn statuses_become_typed_failures() {
        assert_eq!(check_status(204, None), Ok(()));
        assert_eq!(check_status(401, None), Err(Failure::Auth { status: 401 }));
        assert_eq!(
            check_status(429, Some("3")),
            Err(Failure::RateLimited {
                retry_after_ms: Some(3000)
            })
        );
        assert_eq!(
            check_status(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Err(Failure::RateLimited {
                retry_after_ms: None
            })
        );
        assert_eq!(
            check_status(503, None),
            Err(Failure::Server { status: 503 })
        );
        assert_eq!(
            check_status(409, None),
            Err(Failure::Rejected { status: 409 })
        );
    }

    #[test]
    fn signed_urls_resolve_against_the_signer() {
        let base = "http://127.0.0.1:8787/api";
        let s = parse_signed(
            r#"{"method":"put","url":"/livestore-filesync-files/s1/ab?exp=1&sig=x","headers":{"content-type":"text/plain"},"expiresAt":"2026-01-01T00:00:00Z"}"#,
            base,
            "PUT",
        )
        .unwrap();
        assert_eq!(s.method, "PUT");
        assert_eq!(
            s.url,
            "http://127.0.0.1:8787/livestore-filesync-files/s1/ab?exp=1&sig=x"
        );
        assert_eq!(
            s.headers,
            vec![("content-type".into(), "text/plain".into())]
        );
        let d = parse_signed(r#"{"url":"https://cdn/x"}"#, base, "GET").unwrap();
        assert_eq!(
            (d.method.as_str(), d.url.as_str()),
            ("GET", "https://cdn/x")
        );
        assert_eq!(
            resolve(base, "blob/1").as_deref(),
            Some("http://127.0.0.1:8787/api/blob/1")
        );
        assert_eq!(resolve(base, "//cdn/x").as_deref(), Some("http://cdn/x"));
        for bad in [
            "",
            "{}",
            r#"{"url":""}"#,
            r#"{"url":"x","method":"DELETE"}"#,
            "<html>",
        ] {
            assert!(
                matches!(
                    parse_signed(bad, base, "PUT"),
                    Err(Failure::Protocol { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn event_answers_are_validated() {
        let mut stored = event(1).to_wire();
        stored.seq = Some(5);
        let text = serde_json::to_string(&serde_json::json!({ "events": [stored] })).unwrap();
        let got = parse_pushed(&text, 1).unwrap();
        assert_eq!(got[0].seq, Seq(5));
        assert!(matches!(
            parse_pushed(&text, 2),
            Err(Failure::Protocol { .. })
        ));
        let page =
            serde_json::to_string(&serde_json::json!({ "events": [stored], "hasMore": true }))
                .unwrap();
        assert!(parse_pulled(&page).unwrap().1);
        // A confirmed event without its seq, or a broken one, is refused whole.
        let unconfirmed =
            serde_json::to_string(&serde_json::json!({ "events": [event(2).to_wire()] })).unwrap();
        assert!(matches!(
            parse_pulled(&unconfirmed),
            Err(Failure::Protocol { .. })
        ));
        assert!(matches!(
            parse_pulled("nope"),
            Err(Failure::Protocol { .. })
        ));
        assert_eq!(parse_live("ready", r#"{"head":3}"#), Ok(Live::Ready));
        assert_eq!(parse_live("ping", ""), Ok(Live::Other));
        assert!(matches!(parse_live("events", &page), Ok(Live::Events(e)) if e.len() == 1));
        assert!(parse_live("events", "{").is_err());
    }

    #[test]
    fn a_parting_push_is_the_longest_prefix_that_fits_written_as_a_push() {
        let events: Vec<ClientEvent> = (1..=5).map(event).collect();
        let texts: Vec<String> = events.iter().map(envelope_json).collect();
        let envelopes: Vec<&str> = texts.iter().map(String::as_str).collect();
        let all = push_body(&events);
        assert_eq!(
            parting_body(&envelopes, all.len()).as_deref(),
            Some(all.as_str())
        );
        let three = push_body(&events[..3]);
        assert_eq!(
            parting_body(&envelopes, three.len()).as_deref(),
            Some(three.as_str()),
            "the limit is inclusive and the size computed exactly"
        );
        assert_eq!(
            parting_body(&envelopes, three.len() + 5).as_deref(),
            Some(three.as_str()),
            "an event that does not fit whole is left for the next session"
        );
        assert_eq!(
            parting_body(&envelopes, 10),
            None,
            "not even one event fits"
        );
        assert_eq!(parting_body(&[], PARTING_BODY_LIMIT), None);
    }

    #[test]
    fn the_tabs_hear_only_what_changed_in_the_unconfirmed_events() {
        let all: Vec<ClientEvent> = (1..=4).map(event).collect();
        let start = PartingSent::default();
        // Two events made durable: both go.
        let (sent, new) = parting_delta(start, &all[..2]).unwrap();
        assert_eq!((sent, new.len()), (PartingSent { below: 1, upto: 3 }, 2));
        assert_eq!(parting_delta(sent, &all[..2]), None, "nothing changed");
        // A third: only it goes.
        let (sent, new) = parting_delta(sent, &all[..3]).unwrap();
        assert_eq!((new.len(), new[0].id.n), (1, 3));
        // The first two confirmed: only the new floor goes.
        let (sent, new) = parting_delta(sent, &all[2..3]).unwrap();
        assert_eq!((sent.below, new.len()), (3, 0));
        // All confirmed: everything below the last sent goes.
        let (sent, new) = parting_delta(sent, &[]).unwrap();
        assert_eq!((sent, new.len()), (PartingSent { below: 4, upto: 4 }, 0));
    }
}
