//! Object storage in etcd with Kubernetes semantics: one JSON object per key,
//! `metadata.resourceVersion` = the key's `mod_revision` (set on every read,
//! never stored), creates that fail when the key exists, updates and deletes
//! that compare-and-swap on `mod_revision`, lists that page through one
//! revision, and watches that resume from a revision.

mod continue_token;
mod keys;
mod watch;

#[cfg(test)]
mod tests;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use serde_json::Value;

pub use continue_token::ContinueToken;
pub use keys::{collection_prefix, object_key, prefix_end};
pub use watch::{EventType, Watch, WatchBatch, WatchEvent};

/// Largest gRPC message accepted from etcd: a list page of large objects
/// exceeds tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Why a storage operation failed. The API layer maps each to a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd {operation} failed: {source}")]
    Etcd {
        operation: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error(
        "the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { key: String },
    #[error("{message}")]
    PreconditionFailed { message: String },
    #[error("revision {revision} has been compacted")]
    Compacted { revision: i64 },
    #[error("invalid continue token: {reason}")]
    InvalidContinue { reason: &'static str },
    #[error("the value at {key} is not a JSON object: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("etcd answered {operation} without a response header")]
    MissingHeader { operation: &'static str },
    #[error("etcd canceled the watch: {reason}")]
    WatchCanceled { reason: String },
    #[error("etcd closed the watch stream")]
    WatchClosed,
}

impl StoreError {
    /// Wraps an etcd error, recognising a read or watch below the compacted
    /// revision (etcd reports it as a gRPC error whose text says so).
    fn etcd(operation: &'static str, revision: i64) -> impl FnOnce(etcd_client::Error) -> Self {
        move |source| match &source {
            etcd_client::Error::GRpcStatus(status)
                if status
                    .message()
                    .contains("required revision has been compacted") =>
            {
                Self::Compacted { revision }
            }
            _ => Self::Etcd { operation, source },
        }
    }
}

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
    client: Client,
}

impl Store {
    /// Connects to any of `endpoints` (`http://host:port`).
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(30));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(StoreError::etcd("connect", 0))?;
        Ok(Self { client })
    }

    /// The etcd client, for what keeps its own keys next to the objects
    /// (the allocators).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// etcd's current revision; also the readiness probe.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        let response = self
            .kv()
            .get(
                "/registry/health",
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(StoreError::etcd("get", 0))?;
        Ok(response
            .header()
            .ok_or(StoreError::MissingHeader { operation: "get" })?
            .revision())
    }

    pub async fn get(&self, key: &str) -> Result<Value, StoreError> {
        let response = self
            .kv()
            .get(key, None)
            .await
            .map_err(StoreError::etcd("get", 0))?;
        match response.kvs().first() {
            Some(kv) => decode(kv, kv.mod_revision()),
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
        let (mut start, mut revision) = match request.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token)?;
                (
                    format!("{prefix}{}", token.start_after_prefix).into_bytes(),
                    token.revision,
                )
            }
            None => (prefix.as_bytes().to_vec(), 0),
        };
        let end = prefix_end(prefix);
        let mut items = Vec::new();
        let mut kv = self.kv();
        loop {
            let mut options = GetOptions::new().with_range(end.clone());
            if revision > 0 {
                options = options.with_revision(revision);
            }
            if let Some(limit) = request.limit {
                // Filtered lists read ahead a little: most pages then take
                // one round trip even when some keys are skipped.
                options = options.with_limit(limit.max(1).saturating_mul(2) as i64);
            }
            let response = kv
                .get(start.clone(), Some(options))
                .await
                .map_err(StoreError::etcd("range", revision))?;
            if revision == 0 {
                revision = response
                    .header()
                    .ok_or(StoreError::MissingHeader { operation: "range" })?
                    .revision();
            }
            let kvs = response.kvs();
            for (index, entry) in kvs.iter().enumerate() {
                let object = decode(entry, entry.mod_revision())?;
                if keep(&object) {
                    items.push(object);
                }
                if request.limit == Some(items.len()) {
                    let more = index + 1 < kvs.len() || response.more();
                    let continue_token = more
                        .then(|| next_page_token(prefix, entry.key(), revision))
                        .transpose()?;
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token,
                    });
                }
            }
            match kvs.last() {
                Some(last) if response.more() => start = key_after(last.key()),
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
        let value = encode(object);
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self
            .kv()
            .txn(txn)
            .await
            .map_err(StoreError::etcd("txn", 0))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let revision = response
            .header()
            .ok_or(StoreError::MissingHeader { operation: "txn" })?
            .revision();
        Ok(with_resource_version(object.clone(), revision))
    }

    /// Replaces the object if its `mod_revision` is still `expected`:
    /// `Conflict` when it changed, `NotFound` when it is gone.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
    ) -> Result<Value, StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, encode(object), None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .kv()
            .txn(txn)
            .await
            .map_err(StoreError::etcd("txn", 0))?;
        if !response.succeeded() {
            return Err(if current_of_failed_txn(&response).is_some() {
                StoreError::Conflict { key: key.into() }
            } else {
                StoreError::NotFound { key: key.into() }
            });
        }
        let revision = response
            .header()
            .ok_or(StoreError::MissingHeader { operation: "txn" })?
            .revision();
        Ok(with_resource_version(object.clone(), revision))
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
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
                .and_then([TxnOp::delete(key, Some(DeleteOptions::new()))]);
            let response = self
                .kv()
                .txn(txn)
                .await
                .map_err(StoreError::etcd("txn", 0))?;
            if response.succeeded() {
                return Ok(current);
            }
        }
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
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_prev_key();
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .watch(prefix, Some(options))
            .await
            .map_err(StoreError::etcd("watch", start_revision))?;
        Ok(Watch::new(stream, progress_every))
    }
}

/// The object of a failed `update` transaction's `or_else` read, if any.
fn current_of_failed_txn(response: &etcd_client::TxnResponse) -> Option<KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

/// The token for the page that starts right after `last_key`.
fn next_page_token(prefix: &str, last_key: &[u8], revision: i64) -> Result<String, StoreError> {
    let next = key_after(last_key);
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

/// The smallest key greater than `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// An object's `metadata.resourceVersion` as a revision (0 when absent).
pub fn resource_version_of(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|version| version.parse().ok())
        .unwrap_or(0)
}

fn with_resource_version(mut object: Value, revision: i64) -> Value {
    if let Some(metadata) = object
        .as_object_mut()
        .map(|object| {
            object
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

/// Whether two versions of an object are the same apart from their
/// resourceVersion (an update that changes nothing is not written).
pub fn same_object(a: &Value, b: &Value) -> bool {
    without_resource_version(a) == without_resource_version(b)
}

fn without_resource_version(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    object
}

/// The stored form: the object without its resourceVersion (that is the
/// key's revision, and would be stale the moment it was written).
fn encode(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&without_resource_version(object)).expect("JSON values always serialize")
}

fn decode(kv: &KeyValue, revision: i64) -> Result<Value, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason,
    };
    let object: Value =
        serde_json::from_slice(kv.value()).map_err(|error| corrupt(error.to_string()))?;
    if !object.is_object() {
        return Err(corrupt("not an object".into()));
    }
    Ok(with_resource_version(object, revision))
}
