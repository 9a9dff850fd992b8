//! Object storage in etcd with Kubernetes semantics: one JSON object per key,
//! `metadata.resourceVersion` = the key's `mod_revision` (set on every read,
//! never stored), creates that fail when the key exists, updates and deletes
//! that compare-and-swap on `mod_revision`, lists that page through one
//! revision, and watches that resume from a revision. The values of the
//! resources an EncryptionConfiguration names are encrypted (`encryption`).

mod codec;
mod continue_token;
pub mod encryption;
mod error;
mod reencrypt;
mod watch;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;
use skiff_etcd::kv::{ClientTls, Fence, Guarded, KeyRange, Kv, Written};
use skiff_etcd::list_watch::LIST_PAGE_SIZE;
use tracing::warn;

use codec::{decode, encode};
use encryption::Encryption;

pub use codec::{resource_version_of, same_object, with_resource_version};
pub use continue_token::ContinueToken;
pub use error::StoreError;
pub use reencrypt::{ReencryptSummary, Reencrypted};
pub use skiff_etcd::keys::{collection_prefix, object_key};
pub use watch::{EventType, Watch, WatchBatch, WatchEvent};

/// What a delete requires of the object it removes (Kubernetes'
/// `DeleteOptions.preconditions`).
#[derive(Debug, Default, Clone)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// `PreconditionFailed` unless `current` has the required uid and
    /// resourceVersion.
    pub fn check(&self, current: &Value) -> Result<(), StoreError> {
        let metadata = &current["metadata"];
        let failed = |field: &str, wanted: &str, actual: &Value| StoreError::PreconditionFailed {
            message: format!(
                "Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {}",
                actual.as_str().unwrap_or_default()
            ),
        };
        if let Some(uid) = &self.uid
            && metadata["uid"].as_str() != Some(uid)
        {
            return Err(failed("UID", uid, &metadata["uid"]));
        }
        if let Some(version) = &self.resource_version
            && metadata["resourceVersion"].as_str() != Some(version)
        {
            return Err(failed(
                "ResourceVersion",
                version,
                &metadata["resourceVersion"],
            ));
        }
        Ok(())
    }
}

/// Which part of a collection one list call reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListRequest<'a> {
    /// At most this many items (after filtering); `None` is all.
    pub limit: Option<usize>,
    /// A token from an earlier page of the same collection.
    pub continue_token: Option<&'a str>,
}

/// One page of a list, all read at `revision`.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: i64,
    /// Set when more items may follow.
    pub continue_token: Option<String>,
}

/// etcd, seen as a store of Kubernetes objects. Cheap to clone: clones share
/// the gRPC channel.
#[derive(Clone)]
pub struct Store {
    kv: Kv,
    encryption: Arc<Encryption>,
}

impl Store {
    /// Connects to any of `endpoints` (`http://host:port`, or
    /// `https://host:port` with `tls`).
    pub async fn connect(
        endpoints: &[String],
        tls: Option<&ClientTls>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            kv: Kv::connect_with(endpoints, tls).await?,
            encryption: Arc::default(),
        })
    }

    /// This store, encrypting the values of the resources `encryption`
    /// names.
    pub fn encrypted(self, encryption: Arc<Encryption>) -> Self {
        Self { encryption, ..self }
    }

    /// This store, with every write guarded by `fence` (see [`Fence`]).
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            kv: self.kv.fenced(fence),
            encryption: self.encryption.clone(),
        }
    }

    /// The object a raw etcd value at `key` holds (for what reads etcd
    /// itself, the controllers' informers).
    pub fn object_of(&self, key: &str, stored: &[u8], revision: i64) -> Result<Value, StoreError> {
        decode(&self.encryption, key.as_bytes(), stored, revision)
    }

    /// The etcd client, for what keeps its own keys next to the objects
    /// (the allocators).
    pub fn client(&self) -> Kv {
        self.kv.clone()
    }

    /// etcd's current revision; also the readiness probe.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        Ok(self.kv.revision().await?)
    }

    pub async fn get(&self, key: &str) -> Result<Value, StoreError> {
        match self.kv.get(key).await? {
            Some(entry) => decode(
                &self.encryption,
                &entry.key,
                &entry.value,
                entry.mod_revision,
            ),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    /// One page of the objects under `prefix` that `keep` accepts, read at one
    /// revision (the latest, or the continue token's).
    pub async fn list(
        &self,
        prefix: &str,
        request: ListRequest<'_>,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<ListPage, StoreError> {
        let whole = KeyRange::prefix(prefix);
        let (mut range, mut revision) = match request.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token)?;
                let start = format!("{prefix}{}", token.start_after_prefix).into_bytes();
                (
                    KeyRange {
                        start,
                        end: whole.end,
                    },
                    token.revision,
                )
            }
            None => (whole, 0),
        };
        let mut items = Vec::new();
        loop {
            let page = self
                .kv
                .page(&range, revision, Some(etcd_page_size(request.limit)))
                .await?;
            revision = page.revision;
            for (index, entry) in page.entries.iter().enumerate() {
                // A value that does not decode or decrypt (written past
                // the API, or under a key no longer configured) is skipped
                // and logged, as kube-apiserver does, so that one bad key
                // does not make its whole collection unlistable.
                let object = match decode(
                    &self.encryption,
                    &entry.key,
                    &entry.value,
                    entry.mod_revision,
                ) {
                    Ok(object) => object,
                    Err(error) => {
                        warn!(%error, "skipping an object in a list");
                        continue;
                    }
                };
                if keep(&object) {
                    items.push(object);
                }
                if request.limit == Some(items.len()) {
                    let more = index + 1 < page.entries.len() || page.more;
                    let continue_token = more
                        .then(|| next_page_token(prefix, &entry.key, revision))
                        .transpose()?;
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token,
                    });
                }
            }
            match page.entries.last() {
                Some(last) if page.more => range = range.after(&last.key),
                _ => {
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token: None,
                    });
                }
            }
        }
    }

    /// Stores a new object; fails with `AlreadyExists` when the key is taken.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Value, StoreError> {
        match self
            .kv
            .create(key, encode(&self.encryption, key, object))
            .await?
        {
            Written::Done { revision } => Ok(with_resource_version(object.clone(), revision)),
            Written::Conflict | Written::Missing => {
                Err(StoreError::AlreadyExists { key: key.into() })
            }
        }
    }

    /// Replaces the object if its `mod_revision` is still `expected`:
    /// `Conflict` when it changed, `NotFound` when it is gone.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
    ) -> Result<Value, StoreError> {
        match self
            .kv
            .update(key, encode(&self.encryption, key, object), expected)
            .await?
        {
            Written::Done { revision } => Ok(with_resource_version(object.clone(), revision)),
            Written::Conflict => Err(StoreError::Conflict { key: key.into() }),
            Written::Missing => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    /// Replaces the object if its `mod_revision` is still `expected`, in one
    /// transaction with `also` (writes next to the object, such as an
    /// allocation record) and only if `also`'s guards hold too. `Conflict`
    /// when anything changed.
    pub async fn update_with(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
        also: Guarded,
    ) -> Result<Value, StoreError> {
        let guarded = also
            .unchanged(key, expected)
            .put(key, encode(&self.encryption, key, object));
        match self.kv.commit(guarded).await? {
            Written::Done { revision } => Ok(with_resource_version(object.clone(), revision)),
            Written::Conflict | Written::Missing => Err(StoreError::Conflict { key: key.into() }),
        }
    }

    /// Replaces each `(key, object, expected mod_revision)` in one
    /// transaction, only if none of them changed: `Conflict` when one did.
    pub async fn update_all(&self, objects: &[(String, Value, i64)]) -> Result<(), StoreError> {
        let guarded = objects
            .iter()
            .fold(Guarded::new(), |guarded, (key, object, expected)| {
                guarded
                    .unchanged(key, *expected)
                    .put(key, encode(&self.encryption, key, object))
            });
        match self.kv.commit(guarded).await? {
            Written::Done { .. } => Ok(()),
            Written::Conflict | Written::Missing => Err(StoreError::Conflict {
                key: objects
                    .first()
                    .map(|(key, ..)| key.clone())
                    .unwrap_or_default(),
            }),
        }
    }

    /// Removes the object if `preconditions` hold, returning it as it was.
    pub async fn delete(
        &self,
        key: &str,
        preconditions: &Preconditions,
    ) -> Result<Value, StoreError> {
        loop {
            let current = self.get(key).await?;
            preconditions.check(&current)?;
            let revision = resource_version_of(&current);
            if let Written::Done { .. } = self.kv.delete(key, revision).await? {
                return Ok(current);
            }
        }
    }

    /// Rewrites each value under `prefix` that is not in the first
    /// provider's form, calling `progress` per key.
    pub async fn reencrypt(
        &self,
        prefix: &str,
        progress: impl FnMut(&str, Reencrypted),
    ) -> Result<ReencryptSummary, StoreError> {
        reencrypt::rewrite(&self.kv, &self.encryption, prefix, progress).await
    }

    /// Changes under `prefix` from `start_revision` on (inclusive). With
    /// `progress_every`, etcd is asked that often how far the watch has got,
    /// which yields `WatchBatch::Progress` (for bookmarks).
    pub async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_every: Option<std::time::Duration>,
    ) -> Result<Watch, StoreError> {
        let stream = self.kv.watch(prefix, start_revision).await?;
        Ok(Watch::new(stream, self.encryption.clone(), progress_every))
    }
}

/// Most keys one etcd range read returns, as kube-apiserver's `maxLimit`.
const MAX_ETCD_PAGE: i64 = 10_000;

/// How many keys to ask etcd for at a time. A list without `limit` is read
/// in pages of [`LIST_PAGE_SIZE`] so that no single etcd response holds the
/// whole collection; the client still gets every item in one answer, as
/// from kube-apiserver (which never truncates an unlimited list: clients
/// such as Python's do not follow `continue` unless asked). A list with a
/// limit reads ahead a little, as filtered lists may skip keys, capped at
/// [`MAX_ETCD_PAGE`].
fn etcd_page_size(limit: Option<usize>) -> i64 {
    match limit {
        None => LIST_PAGE_SIZE,
        Some(limit) => i64::try_from(limit.max(1).saturating_mul(2))
            .unwrap_or(MAX_ETCD_PAGE)
            .min(MAX_ETCD_PAGE),
    }
}

/// The token for the page that starts right after `last_key`.
fn next_page_token(prefix: &str, last_key: &[u8], revision: i64) -> Result<String, StoreError> {
    let mut next = last_key.to_vec();
    next.push(0);
    let relative = next
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(last_key).into_owned(),
            reason: "key outside its collection or not UTF-8".into(),
        })?;
    Ok(ContinueToken {
        revision,
        start_after_prefix: relative.to_owned(),
    }
    .encode())
}
