//! Every conversion between Rust values and the JS values apps see, in one place: typed errors
//! to and from JS `Error`s, app options and metadata from JS, Rust values and the hub's message
//! text to the plain (frozen) objects apps get.
//!
//! The runtime keeps the objects these build (a file's frozen object is shared by every
//! `getFiles()` call until it changes, which React's `useSyncExternalStore` relies on) and
//! holds the app's callbacks, but never takes a JS value apart or builds one itself.
//!
//! Objects come from JSON through the browser's `JSON.parse`: faster than setting fields one by
//! one from wasm, and the message text the hub sent is parsed once for both sides (Rust decodes
//! the state it needs, the browser builds the objects).

use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::{JsCast, JsValue};

use crate::runtime::protocol::{encode, error, ErrorInfo};

/// A value as the plain JS object apps get.
pub fn to_js<T: Serialize>(v: &T) -> JsValue {
    js_sys::JSON::parse(&encode(v)).unwrap_or(JsValue::NULL)
}

/// `value`, frozen (objects only): apps share it and cannot change it under other callers.
pub fn frozen(value: JsValue) -> JsValue {
    if value.is_object() {
        js_sys::Object::freeze(value.unchecked_ref::<js_sys::Object>());
    }
    value
}

/// A typed error as a JS `Error` named `FileSyncError` with `code` and `retryable`.
pub fn js_error(e: &ErrorInfo) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("FileSyncError");
    let _ = js_sys::Reflect::set(
        &err,
        &JsValue::from_str("code"),
        &JsValue::from_str(&e.code),
    );
    let _ = js_sys::Reflect::set(
        &err,
        &JsValue::from_str("retryable"),
        &JsValue::from_bool(e.retryable),
    );
    err.into()
}

/// A typed error back from the JS `Error` [`js_error`] made (`unknown` for anything else).
pub fn from_js_error(v: &JsValue) -> ErrorInfo {
    ErrorInfo {
        code: string_field(v, "code").unwrap_or_else(|| "unknown".into()),
        message: string_field(v, "message").unwrap_or_default(),
        retryable: field(v, "retryable")
            .and_then(|c| c.as_bool())
            .unwrap_or(false),
    }
}

fn field(v: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(v, &JsValue::from_str(key)).ok()
}

/// `v[key]` if it is a string.
pub fn string_field(v: &JsValue, key: &str) -> Option<String> {
    field(v, key).and_then(|s| s.as_string())
}

/// Decodes options given by the app: as JSON (`JSON.stringify` drops `undefined` members), so
/// one decoder serves every options type and unknown members are refused by name.
pub fn from_js<T: for<'de> serde::Deserialize<'de>>(options: &JsValue) -> Result<T, ErrorInfo> {
    let invalid = |m: String| error("invalid_options", m, false);
    let text = js_sys::JSON::stringify(options)
        .map_err(|e| invalid(format!("{e:?}")))?
        .as_string()
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| {
        // The position in the JSON text means nothing to the app: drop it.
        let message = e.to_string();
        invalid(
            message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string(),
        )
    })
}

/// An options object split into its JSON-decoded members and its `metadata` member (any JSON
/// value, kept as the app gave it).
pub fn options_with_metadata<T>(options: &JsValue) -> Result<(T, JsValue), ErrorInfo>
where
    T: for<'de> serde::Deserialize<'de> + Default,
{
    if options.is_undefined() || options.is_null() {
        return Ok((T::default(), JsValue::UNDEFINED));
    }
    let metadata = field(options, "metadata").unwrap_or(JsValue::UNDEFINED);
    let rest = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
    let _ = js_sys::Reflect::delete_property(&rest, &JsValue::from_str("metadata"));
    Ok((from_js(&rest.into())?, metadata))
}

/// A file's metadata as the JSON text events carry; `None` when absent.
pub fn metadata_json(metadata: &JsValue) -> Result<Option<String>, ErrorInfo> {
    if metadata.is_undefined() || metadata.is_null() {
        return Ok(None);
    }
    let json = js_sys::JSON::stringify(metadata)
        .map_err(|_| error("invalid_field", "metadata is not JSON-serializable", false))?;
    Ok(json.as_string())
}

/// The body of a hub message as JS objects: `JSON.parse(text)[variant]`.
pub fn message_body(text: &str, variant: &str) -> JsValue {
    js_sys::JSON::parse(text)
        .ok()
        .and_then(|m| field(&m, variant))
        .unwrap_or(JsValue::UNDEFINED)
}

/// The files of a message body (`body.files`), each frozen, in the message's order.
pub fn frozen_files(body: &JsValue) -> impl Iterator<Item = JsValue> {
    let objects: js_sys::Array = field(body, "files")
        .and_then(|a| a.dyn_into().ok())
        .unwrap_or_default();
    (0..objects.length()).map(move |i| frozen(objects.get(i)))
}

/// A JSON text (an app event, the history) as a JS value; `null` if it is not JSON.
pub fn parse(json: &RawValue) -> JsValue {
    js_sys::JSON::parse(json.get()).unwrap_or(JsValue::NULL)
}

/// A plain object of the given members.
pub fn object(members: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (key, value) in members {
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(key), value);
    }
    o.into()
}
