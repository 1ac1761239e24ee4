//! The global scope, whatever it is: `window`, a dedicated worker or a SharedWorker. Every
//! adapter reaches browser APIs through here, never through `web_sys::window()`, which is
//! `None` in workers.

use wasm_bindgen::{JsCast, JsValue};

use super::error::WebError;

/// `globalThis`.
pub fn global() -> js_sys::Object {
    js_sys::global()
}

/// `globalThis[name]`, or `Unavailable` when missing.
pub fn property(api: &'static str, name: &str) -> Result<JsValue, WebError> {
    let v = js_sys::Reflect::get(&global(), &JsValue::from_str(name))
        .map_err(|e| WebError::from_js(api, &e))?;
    if v.is_undefined() || v.is_null() {
        return Err(WebError::Unavailable {
            api,
            message: format!("globalThis.{name} is missing in this scope"),
        });
    }
    Ok(v)
}

/// `globalThis.navigator` (a `Navigator` in pages, a `WorkerNavigator` in workers).
pub fn navigator() -> Result<JsValue, WebError> {
    property("navigator", "navigator")
}

/// `navigator[name]`, e.g. `storage` or `locks`.
pub fn navigator_property(api: &'static str, name: &str) -> Result<JsValue, WebError> {
    let v = js_sys::Reflect::get(&navigator()?, &JsValue::from_str(name))
        .map_err(|e| WebError::from_js(api, &e))?;
    if v.is_undefined() || v.is_null() {
        return Err(WebError::Unavailable {
            api,
            message: format!("navigator.{name} is missing in this scope"),
        });
    }
    Ok(v)
}

/// `globalThis.indexedDB`.
pub fn indexed_db() -> Result<web_sys::IdbFactory, WebError> {
    property("indexedDB", "indexedDB")?
        .dyn_into()
        .map_err(|v| WebError::Unavailable {
            api: "indexedDB",
            message: format!("globalThis.indexedDB is not an IDBFactory: {v:?}"),
        })
}

/// `navigator.storage`.
pub fn storage_manager() -> Result<web_sys::StorageManager, WebError> {
    navigator_property("navigator.storage", "storage")?
        .dyn_into()
        .map_err(|v| WebError::Unavailable {
            api: "navigator.storage",
            message: format!("not a StorageManager: {v:?}"),
        })
}

/// `navigator.locks`.
pub fn lock_manager() -> Result<web_sys::LockManager, WebError> {
    navigator_property("navigator.locks", "locks")?
        .dyn_into()
        .map_err(|v| WebError::Unavailable {
            api: "navigator.locks",
            message: format!("not a LockManager: {v:?}"),
        })
}

/// A random UUID (`crypto.randomUUID()`): tab ids, file ids, client ids.
pub fn random_uuid() -> Result<String, WebError> {
    let crypto = property("crypto", "crypto")?;
    let f: js_sys::Function = js_sys::Reflect::get(&crypto, &JsValue::from_str("randomUUID"))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| WebError::Unavailable {
            api: "crypto.randomUUID",
            message: "crypto.randomUUID is missing (insecure context?)".into(),
        })?;
    f.call0(&crypto)
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| WebError::Unavailable {
            api: "crypto.randomUUID",
            message: "crypto.randomUUID failed".into(),
        })
}

/// Whether `globalThis[name]` exists (e.g. `SharedWorker`, missing in some browsers).
pub fn has(name: &str) -> bool {
    js_sys::Reflect::has(&global(), &JsValue::from_str(name)).unwrap_or(false)
}

/// `url` made absolute against this page's (or worker's) location; `None` if it is not an
/// http(s) URL.
pub fn absolute_url(url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let base = js_sys::Reflect::get(&global(), &JsValue::from_str("location"))
        .ok()
        .and_then(|l| js_sys::Reflect::get(&l, &JsValue::from_str("href")).ok())
        .and_then(|h| h.as_string())?;
    web_sys::Url::new_with_base(url, &base)
        .ok()
        .map(|u| u.href())
        .filter(|h| h.starts_with("http://") || h.starts_with("https://"))
}

/// The wall clock, in ms since the epoch (`Date.now()`).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A random number in [0, 1) (`Math.random()`): jitter and seeds, nothing secret.
pub fn random() -> f64 {
    js_sys::Math::random()
}
