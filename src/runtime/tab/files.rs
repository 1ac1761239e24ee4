//! File operations: bytes stored here first (opening the byte store again if the browser removed it), then the change committed through the hub; reads and object URLs.

use super::*;
use crate::web::global::now_ms;

/// What `getStorageInfo()` reports.
pub struct StorageInfo {
    /// Bytes the origin uses (`navigator.storage.estimate()`).
    pub usage: f64,
    /// Bytes the origin may use.
    pub quota: f64,
    /// Whether the browser keeps the origin's data under storage pressure.
    pub persisted: bool,
    /// Where this store's bytes live: `"opfs"` or `"indexeddb"`.
    pub kind: String,
    /// The byte budget's figures from the hub: `{budget, held, evictable}`.
    pub budget: JsValue,
}

impl Tab {
    pub(super) fn info_of(file: &web_sys::File) -> Result<FileInfo, ErrorInfo> {
        let name = file.name();
        if name.is_empty()
            || name.len() > 255
            || name.contains('/')
            || name.chars().any(char::is_control)
        {
            return Err(error(
                "invalid_field",
                format!("unusable file name {name:?}"),
                false,
            ));
        }
        let size = file.size();
        Ok(FileInfo {
            name,
            mime_type: file.type_(),
            size: if size >= 0.0 { size as u64 } else { 0 },
        })
    }

    pub(super) fn bytes(&self) -> Rc<ByteStore> {
        self.inner.bytes.borrow().clone()
    }

    /// Opens the byte store again (the browser removed the storage under it).
    pub(super) async fn reopen_bytes(&self) -> Result<Rc<ByteStore>, ErrorInfo> {
        let store = StoreId::new(self.inner.hello_store().to_string())?;
        let fresh = Rc::new(ByteStore::open(&store).await.map_err(|e| web_error(&e))?);
        *self.inner.bytes.borrow_mut() = fresh.clone();
        Ok(fresh)
    }

    /// Stores a file's bytes here (hashing them). Storage removed under the tab (site data
    /// cleared, eviction) is opened again and the write made once more: a save must not fail
    /// because of handles to storage that no longer exists.
    pub(super) async fn store_bytes(&self, file: &web_sys::File) -> Result<ContentHash, ErrorInfo> {
        match self.bytes().write(file).await {
            Err(e) if e.is_storage_gone() => {
                let fresh = self.reopen_bytes().await?;
                fresh.write(file).await.map_err(|e| web_error(&e))
            }
            other => other.map_err(|e| web_error(&e)),
        }
    }

    /// Saves a new file (`metadata`: its JSON text); returns it.
    pub async fn save(
        &self,
        file: web_sys::File,
        path: Option<String>,
        metadata_json: Option<String>,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let info = Self::info_of(&file)?;
        let path = check_path(path.unwrap_or_else(|| info.name.clone()))?;
        let hash = self.store_bytes(&file).await?;
        let id = FileId::new(random_uuid()?)?;
        let now = Millis(now_ms() as u64);
        self.commit(
            FileEvent::Created(FileCreated {
                id: id.clone(),
                path,
                content_hash: hash,
                info,
                metadata_json,
                created_at: now,
                updated_at: now,
            }),
            None,
        )
        .await?;
        self.saved(id.as_str())
    }

    /// The file a save or update just committed (its change arrives before the reply).
    pub(super) fn saved(&self, id: &str) -> Result<JsValue, ErrorInfo> {
        Some(self.file_js(id))
            .filter(|f| !f.is_undefined())
            .ok_or_else(|| error("not_found", "the file was deleted meanwhile", false))
    }

    /// Replaces a file's content (and metadata, as JSON text, when given); returns it.
    pub async fn update(
        &self,
        id: &str,
        file: web_sys::File,
        metadata_json: Option<String>,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let current = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        let info = Self::info_of(&file)?;
        let metadata = match metadata_json {
            Some(m) => MetadataPatch::Set(m),
            None => MetadataPatch::Keep,
        };
        let hash = self.store_bytes(&file).await?;
        let fid = FileId::new(id.to_string())?;
        let base = ContentHash::parse(&current.content_hash).ok();
        self.commit(
            FileEvent::Updated(FileUpdated {
                id: fid,
                path: current.path,
                remote_key: None,
                content_hash: hash,
                info,
                metadata,
                updated_at: Millis(now_ms() as u64),
                expected_content_hash: None,
                previous_content_hash: base,
            }),
            base,
        )
        .await?;
        self.saved(id)
    }

    /// Deletes a file (its bytes go once nothing else references them).
    pub async fn delete(&self, id: &str) -> Result<(), ErrorInfo> {
        self.check_open()?;
        let fid = FileId::new(id.to_string())?;
        self.commit(
            FileEvent::Deleted(FileDeleted {
                id: fid,
                deleted_at: Millis(now_ms() as u64),
            }),
            None,
        )
        .await
    }

    /// The file, once the bytes of its current content are here, and those bytes: a file whose
    /// bytes are not here yet has its download asked for, at the head of the queue, and is
    /// waited for (see [`reading::verdict`]).
    pub(super) async fn local_blob(&self, id: &str) -> Result<(TabFile, web_sys::Blob), ErrorInfo> {
        // Bytes the byte budget evicted between the verdict and the read: asked for again
        // (a few times at most: the download makes them the most recently read).
        let mut evicted = 0;
        loop {
            let (file, verdict) = {
                let s = self.inner.state.borrow();
                let file = s.files.get(id).map(|e| e.state.clone());
                let v = reading::verdict(file.as_ref(), self.inner.remote.is_some(), s.online);
                (file, v)
            };
            match (verdict, file) {
                (reading::Local::Here, Some(f)) => {
                    let hash = ContentHash::parse(&f.content_hash)?;
                    match self.bytes().read(&hash).await {
                        Ok(blob) => {
                            self.note_read(id);
                            return Ok((f, blob));
                        }
                        Err(e) if e.code() == "not_found" && evicted < 3 => evicted += 1,
                        Err(e) => return Err(web_error(&e)),
                    }
                    self.control(Control::Prioritize {
                        file_id: id.to_string(),
                    })
                    .await?;
                    self.until_local(id).await?;
                }
                (reading::Local::Failed(e), _) => return Err(e),
                _ => {
                    self.control(Control::Prioritize {
                        file_id: id.to_string(),
                    })
                    .await?;
                    self.until_local(id).await?;
                }
            }
        }
    }

    /// Resolves once a read of file `id` can go on (its bytes are here, or it failed: the
    /// caller decides again).
    async fn until_local(&self, id: &str) -> Result<(), ErrorInfo> {
        let inner = self.inner.clone();
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            inner
                .state
                .borrow_mut()
                .on_local
                .push((id.to_string(), resolve, reject));
        });
        let mut calls = Vec::new();
        self.settle_local(&mut calls);
        for (f, v) in calls {
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
        JsFuture::from(promise)
            .await
            .map(drop)
            .map_err(|e| from_js_error(&e))
    }

    /// The file's bytes as a `File` with its original name and type: its current content, or
    /// `content` (a hash) if given and still held here.
    pub async fn read(&self, id: &str, content: Option<&str>) -> Result<web_sys::File, ErrorInfo> {
        self.check_open()?;
        let f = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        let (f, blob) = match content.filter(|c| *c != f.content_hash) {
            None => self.local_blob(id).await?,
            Some(other) => {
                let hash = ContentHash::parse(other)?;
                let blob = self.bytes().read(&hash).await.map_err(|e| {
                    if e.code() == "not_found" {
                        error(
                            "not_available",
                            format!("the content {other} of {id} is no longer in this browser"),
                            false,
                        )
                    } else {
                        web_error(&e)
                    }
                })?;
                (f, blob)
            }
        };
        let parts = js_sys::Array::of1(&blob);
        let bag = web_sys::FilePropertyBag::new();
        bag.set_type(&f.mime_type);
        bag.set_last_modified(f.updated_at as f64);
        web_sys::File::new_with_blob_sequence_and_options(&parts, &f.name, &bag)
            .map_err(|e| web_error(&crate::web::error::WebError::from_js("File", &e)))
    }

    /// An object URL for the file's content, shared by files with the same content and revoked
    /// when no file has that content any more (or on dispose).
    pub async fn url(&self, id: &str) -> Result<String, ErrorInfo> {
        self.check_open()?;
        let f = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        let cached = self.inner.state.borrow().urls.get(&f.content_hash).cloned();
        if let Some(u) = cached {
            self.note_read(id);
            return Ok(u);
        }
        let (f, blob) = self.local_blob(id).await?;
        let url = web_sys::Url::create_object_url_with_blob(&blob)
            .map_err(|e| web_error(&crate::web::error::WebError::from_js("URL", &e)))?;
        let mut s = self.inner.state.borrow_mut();
        match s.urls.get(&f.content_hash) {
            // Another call made one meanwhile: keep one URL per content.
            Some(existing) => {
                let _ = web_sys::Url::revoke_object_url(&url);
                Ok(existing.clone())
            }
            None => {
                s.urls.insert(f.content_hash.clone(), url.clone());
                drop(s);
                self.report_urls();
                Ok(url)
            }
        }
    }

    /// Revokes the object URL made for the file's current content, if any: the app no longer
    /// shows it, so the byte budget may evict it.
    pub fn release_url(&self, id: &str) -> Result<(), ErrorInfo> {
        self.check_open()?;
        let released = {
            let mut s = self.inner.state.borrow_mut();
            let hash = s.files.get(id).map(|e| e.state.content_hash.clone());
            hash.and_then(|h| s.urls.remove(&h))
        };
        if let Some(url) = released {
            let _ = web_sys::Url::revoke_object_url(&url);
            self.report_urls();
        }
        Ok(())
    }

    /// Tells the hub the app read the file (the byte budget evicts it last).
    fn note_read(&self, id: &str) {
        self.post(&ToHub::Read(id.to_string()));
    }

    /// Tells the hub which contents this tab's object URLs show (never evicted).
    pub(super) fn report_urls(&self) {
        let hashes = self
            .inner
            .state
            .borrow()
            .urls
            .keys()
            .filter_map(|h| ContentHash::parse(h).ok())
            .collect();
        self.post(&ToHub::InUse(self.inner.tab.clone(), hashes));
    }

    /// The origin's storage figures, whether the browser keeps its data under storage
    /// pressure, and where this store's bytes live.
    pub async fn storage_info(&self) -> Result<StorageInfo, ErrorInfo> {
        self.check_open()?;
        let usage = crate::web::bytes::usage()
            .await
            .map_err(|e| web_error(&e))?;
        let persisted = crate::web::bytes::persisted()
            .await
            .map_err(|e| web_error(&e))?;
        let budget = self.request(ToHub::Usage, None).await?;
        Ok(StorageInfo {
            usage: usage.usage,
            quota: usage.quota,
            persisted,
            kind: self.storage(),
            budget,
        })
    }

    /// Asks the browser to keep the origin's data under storage pressure; whether it does now.
    pub async fn request_persistence(&self) -> Result<bool, ErrorInfo> {
        self.check_open()?;
        crate::web::bytes::persist()
            .await
            .map_err(|e| web_error(&e))
    }
}

/// The content of file `id` if an object URL was made for it (before the file changes).
pub(super) fn held_url(s: &State, id: &str) -> Option<String> {
    let hash = &s.files.get(id)?.state.content_hash;
    s.urls.contains_key(hash).then(|| hash.clone())
}

/// Revokes the object URLs of `released` contents no file holds any more (a change only
/// looks at the contents it released: no pass over every file); whether it revoked any.
pub(super) fn revoke_unused_urls(s: &mut State, released: Vec<String>) -> bool {
    let before = s.urls.len();
    for h in released {
        let held = s
            .files
            .values()
            .any(|e| e.state.has_local_copy && e.state.content_hash == h);
        if !held {
            if let Some(url) = s.urls.remove(&h) {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
        }
    }
    s.urls.len() != before
}
