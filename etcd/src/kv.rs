//! A small typed layer over etcd-client: reads that say at which revision
//! they saw a key, paged lists at one revision, and writes guarded by
//! compare-and-swap on `mod_revision` (or on absence), alone or several in
//! one transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    KvClient, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
    WatchStream,
};

use crate::backoff::Backoff;
use crate::expiry::Leases;
use crate::keys::{HEALTH, prefix_end, time_to_live};

/// Largest gRPC message accepted from etcd. A full list page, or a watch
/// response batching a large transaction, exceeds tonic's 4 MiB default;
/// 500 objects at etcd's default 1.5 MiB object limit stay under 1 GiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {operation} failed: {source}")]
    Failed {
        operation: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// A read or watch below the compacted revision.
    #[error("revision {revision} has been compacted")]
    Compacted { revision: i64 },
    #[error("etcd answered {operation} without a response header")]
    MissingHeader { operation: &'static str },
    /// A fenced write after the fence moved on: the writer's term of
    /// leadership is over.
    #[error("write refused: {key} is no longer at revision {revision} (leadership lost)")]
    Fenced { key: String, revision: i64 },
    #[error("reading {}: {source}", path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to reach an etcd that serves clients over TLS and asks for a client
/// certificate: kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile` (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The client identity of every [`Kv::connect`] in this process: a node
/// agent has one, for all its watches and writes.
static PROCESS_TLS: std::sync::OnceLock<ClientTls> = std::sync::OnceLock::new();

/// Sets the process's etcd client identity, once, before the first
/// connect; a second call is ignored and returns false.
pub fn set_process_tls(tls: ClientTls) -> bool {
    PROCESS_TLS.set(tls).is_ok()
}

impl ClientTls {
    /// The identity of the flags `--etcd-cafile`, `--etcd-certfile` and
    /// `--etcd-keyfile`: all three, or none (the CLIs require them together).
    pub fn from_flags(
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Option<Self> {
        Some(Self {
            ca_file: ca_file?,
            cert_file: cert_file?,
            key_file: key_file?,
        })
    }

    /// The three files read now, so a missing one fails the connect and
    /// not each later call.
    pub(crate) fn options(&self) -> Result<TlsOptions, EtcdError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| EtcdError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca_file)?))
            .identity(Identity::from_pem(
                read(&self.cert_file)?,
                read(&self.key_file)?,
            )))
    }
}

impl EtcdError {
    /// Wraps an etcd error of a call at `revision`, recognising compaction
    /// (etcd reports it as a gRPC error whose text says so).
    pub fn of(operation: &'static str, revision: i64) -> impl FnOnce(etcd_client::Error) -> Self {
        move |source| match &source {
            etcd_client::Error::GRpcStatus(status)
                if status
                    .message()
                    .contains("required revision has been compacted") =>
            {
                Self::Compacted { revision }
            }
            _ => Self::Failed { operation, source },
        }
    }
}

impl EtcdError {
    /// etcd could not be reached or could not answer in time (no member,
    /// no leader, a broken connection): worth retrying, unlike a refusal.
    pub fn is_unavailable(&self) -> bool {
        let Self::Failed { source, .. } = self else {
            return false;
        };
        match source {
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
            etcd_client::Error::GRpcStatus(status) => matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            _ => false,
        }
    }

    /// etcd refused a request over its `--max-request-bytes`
    /// (`etcdserver: request is too large`), or its gRPC server refused the
    /// message before that (`ResourceExhausted`).
    pub fn is_too_large(&self) -> bool {
        let Self::Failed {
            source: etcd_client::Error::GRpcStatus(status),
            ..
        } = self
        else {
            return false;
        };
        status.code() == tonic::Code::ResourceExhausted
            || status.message().contains("request is too large")
    }
}

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl Entry {
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

impl From<&KeyValue> for Entry {
    fn from(kv: &KeyValue) -> Self {
        Self {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// Keys from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Every key under `prefix`.
    pub fn prefix(prefix: &str) -> Self {
        Self {
            start: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix),
        }
    }

    /// The rest of the range after `key`.
    pub fn after(&self, key: &[u8]) -> Self {
        let mut start = key.to_vec();
        start.push(0);
        Self {
            start,
            end: self.end.clone(),
        }
    }
}

/// One page of a range read, all at `revision`.
#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub revision: i64,
    /// Keys past this page remain in the range.
    pub more: bool,
}

/// What a guarded write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; etcd's revision after the write.
    Done { revision: i64 },
    /// The guard failed: someone wrote (or, for a create, already holds)
    /// the key since it was read.
    Conflict,
    /// An update or delete of a key that is gone.
    Missing,
}

/// Several writes that happen together, only if every guard holds.
#[derive(Debug, Default, Clone)]
pub struct Guarded {
    guards: Vec<Compare>,
    writes: Vec<TxnOp>,
    /// Puts of keys that expire (`keys::time_to_live`): written with a
    /// lease when the transaction is committed.
    expiring: Vec<(String, Vec<u8>, Duration)>,
}

impl Guarded {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires that `key` does not exist.
    pub fn absent(mut self, key: &str) -> Self {
        self.guards
            .push(Compare::create_revision(key, CompareOp::Equal, 0));
        self
    }

    /// Requires that `key` is still at `mod_revision`.
    pub fn unchanged(mut self, key: &str, mod_revision: i64) -> Self {
        self.guards
            .push(Compare::mod_revision(key, CompareOp::Equal, mod_revision));
        self
    }

    pub fn put(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        match time_to_live(key) {
            Some(ttl) => self.expiring.push((key.to_owned(), value.into(), ttl)),
            None => self.writes.push(TxnOp::put(key, value.into(), None)),
        }
        self
    }

    pub fn delete(mut self, key: &str) -> Self {
        self.writes.push(TxnOp::delete(key, None));
        self
    }
}

/// A write fence: a fenced client's writes apply only while `key` is still
/// at `mod_revision`, checked in the writes' own transaction. The leader
/// fences its controllers with the revision at which it took the lease, so
/// a deposed leader's late writes fail instead of racing its successor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub mod_revision: i64,
}

/// etcd, through one gRPC channel. Cheap to clone: clones share it.
#[derive(Clone)]
pub struct Kv {
    client: Client,
    /// The leases expiring keys are written with.
    leases: Arc<Leases>,
    fence: Option<Fence>,
    /// With several endpoints, the task keeping the channel on the members
    /// that answer ([`crate::members`]) runs while this lives.
    _members: Option<Arc<()>>,
}

impl Kv {
    /// Connects to any of `endpoints` (`http://host:port`). Keep-alives make
    /// a silently dead etcd (or path to it) fail the open calls instead of
    /// leaving a watch waiting forever; only while a call is open, as etcd
    /// answers pings on an idle connection with GOAWAY.
    /// With the process's [`ClientTls`] ([`set_process_tls`]), if any.
    pub async fn connect(endpoints: &[String]) -> Result<Self, EtcdError> {
        Self::connect_with(endpoints, PROCESS_TLS.get()).await
    }

    /// [`Kv::connect`] to `https://` endpoints with `tls`. With several
    /// endpoints the channel balances over them and leaves one that fails.
    pub async fn connect_with(
        endpoints: &[String],
        tls: Option<&ClientTls>,
    ) -> Result<Self, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        if let Some(tls) = tls {
            options = options.with_tls(tls.options()?);
        }
        if endpoints.len() < 2 {
            let client = Client::connect(endpoints, Some(options))
                .await
                .map_err(EtcdError::of("connect", 0))?;
            return Ok(Self {
                client,
                leases: Arc::default(),
                fence: None,
                _members: None,
            });
        }
        let answering = crate::members::answering(endpoints).await;
        let start: Vec<&String> = answering.iter().collect();
        let client = Client::connect(start, Some(options))
            .await
            .map_err(EtcdError::of("connect", 0))?;
        let owner = Arc::new(());
        crate::members::follow(
            client.clone(),
            endpoints.to_vec(),
            answering,
            Arc::downgrade(&owner),
        );
        Ok(Self {
            client,
            leases: Arc::default(),
            fence: None,
            _members: Some(owner),
        })
    }

    /// This client, with every write guarded by `fence`.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// Connects, retrying (100 ms doubling to 5 s) until etcd answers.
    pub async fn connect_retrying(endpoints: &[String]) -> Self {
        let mut backoff = Backoff::default();
        loop {
            match Self::connect(endpoints).await {
                Ok(kv) => return kv,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(?endpoints, %error, retry_in = ?delay, "connecting to etcd failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The etcd-client underneath, for what this layer does not cover
    /// (tests compact with it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn watch_client(&self) -> WatchClient {
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// etcd's current revision; also a readiness probe.
    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let response = self
            .kv()
            .get(HEALTH, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(EtcdError::of("get", 0))?;
        Ok(response
            .header()
            .ok_or(EtcdError::MissingHeader { operation: "get" })?
            .revision())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Entry>, EtcdError> {
        let response = self
            .kv()
            .get(key, None)
            .await
            .map_err(EtcdError::of("get", 0))?;
        Ok(response.kvs().first().map(Entry::from))
    }

    /// Up to `limit` keys of `range` (all with `None`) at `revision` (0:
    /// the newest, which the returned page names).
    pub async fn page(
        &self,
        range: &KeyRange,
        revision: i64,
        limit: Option<i64>,
    ) -> Result<Page, EtcdError> {
        let mut options = GetOptions::new()
            .with_range(range.end.clone())
            .with_revision(revision);
        if let Some(limit) = limit {
            options = options.with_limit(limit);
        }
        let response = self
            .kv()
            .get(range.start.clone(), Some(options))
            .await
            .map_err(EtcdError::of("range", revision))?;
        let revision = match revision {
            0 => response
                .header()
                .ok_or(EtcdError::MissingHeader { operation: "range" })?
                .revision(),
            pinned => pinned,
        };
        Ok(Page {
            entries: response.kvs().iter().map(Entry::from).collect(),
            revision,
            more: response.more(),
        })
    }

    /// Every key under `prefix`, read `page_size` at a time at the
    /// revision of the first page, so that the pages show one snapshot.
    pub async fn list(&self, prefix: &str, page_size: i64) -> Result<Page, EtcdError> {
        let mut range = KeyRange::prefix(prefix);
        let mut revision = 0;
        let mut entries = Vec::new();
        loop {
            let page = self.page(&range, revision, Some(page_size)).await?;
            revision = page.revision;
            if let Some(last) = page.entries.last() {
                range = range.after(&last.key);
            }
            let done = !page.more || page.entries.is_empty();
            entries.extend(page.entries);
            if done {
                return Ok(Page {
                    entries,
                    revision,
                    more: false,
                });
            }
        }
    }

    /// The keys under `prefix`, without their values.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, EtcdError> {
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self
            .kv()
            .get(prefix, Some(options))
            .await
            .map_err(EtcdError::of("range", 0))?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// The changes under `prefix` from `start_revision` on (inclusive),
    /// each with the key's previous value. Progress reports can be
    /// requested on the stream.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream, EtcdError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_prev_key();
        self.watch_client()
            .watch(prefix, Some(options))
            .await
            .map_err(EtcdError::of("watch", start_revision))
    }

    /// Writes `value` at `key` only if the key does not exist.
    pub async fn create(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<Written, EtcdError> {
        self.commit(Guarded::new().absent(key).put(key, value))
            .await
    }

    /// Writes `value` at `key` only if the key is still at `mod_revision`.
    pub async fn update(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        mod_revision: i64,
    ) -> Result<Written, EtcdError> {
        self.swap(
            key,
            Guarded::new().unchanged(key, mod_revision).put(key, value),
        )
        .await
    }

    /// Deletes `key` only if it is still at `mod_revision`.
    pub async fn delete(&self, key: &str, mod_revision: i64) -> Result<Written, EtcdError> {
        self.swap(key, Guarded::new().unchanged(key, mod_revision).delete(key))
            .await
    }

    /// Applies every write of `guarded` if all its guards hold: `Done` or
    /// `Conflict`.
    pub async fn commit(&self, guarded: Guarded) -> Result<Written, EtcdError> {
        self.txn(guarded, Vec::new())
            .await
            .map(|(written, _)| written)
    }

    /// `guarded` on `key`, telling a `Conflict` from a `Missing` key.
    async fn swap(&self, key: &str, guarded: Guarded) -> Result<Written, EtcdError> {
        let count = TxnOp::get(key, Some(GetOptions::new().with_count_only()));
        let (written, responses) = self.txn(guarded, vec![count]).await?;
        if written != Written::Conflict {
            return Ok(written);
        }
        let exists = responses.into_iter().any(|op| match op {
            TxnOpResponse::Get(get) => get.count() > 0,
            _ => false,
        });
        Ok(if exists {
            Written::Conflict
        } else {
            Written::Missing
        })
    }

    /// `writes` and the puts of `expiring` keys, each attached to a lease
    /// of its time to live.
    async fn with_leases(
        &self,
        mut writes: Vec<TxnOp>,
        expiring: Vec<(String, Vec<u8>, Duration)>,
    ) -> Result<Vec<TxnOp>, EtcdError> {
        for (key, value, ttl) in expiring {
            let lease = self
                .leases
                .for_ttl(&self.client, ttl)
                .await
                .map_err(EtcdError::of("lease grant", 0))?;
            writes.push(TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        Ok(writes)
    }

    /// Runs `guarded` (plus the fence's guard), or else the reads of
    /// `otherwise`, whose answers a `Conflict` returns. A failed fence is
    /// `Fenced`, not a conflict: the fence's key is read back when a guard
    /// fails.
    async fn txn(
        &self,
        guarded: Guarded,
        mut otherwise: Vec<TxnOp>,
    ) -> Result<(Written, Vec<TxnOpResponse>), EtcdError> {
        let mut guards = guarded.guards;
        if let Some(fence) = &self.fence {
            guards.push(Compare::mod_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.mod_revision,
            ));
            let read = GetOptions::new().with_keys_only();
            otherwise.push(TxnOp::get(fence.key.as_str(), Some(read)));
        }
        let writes = self.with_leases(guarded.writes, guarded.expiring).await?;
        let txn = Txn::new().when(guards).and_then(writes).or_else(otherwise);
        let response = self.kv().txn(txn).await.map_err(EtcdError::of("txn", 0))?;
        if !response.succeeded() {
            let mut responses = response.op_responses();
            if let Some(fence) = &self.fence {
                let held = match responses.pop() {
                    Some(TxnOpResponse::Get(get)) => get.kvs().first().map(KeyValue::mod_revision),
                    _ => None,
                };
                if held != Some(fence.mod_revision) {
                    return Err(EtcdError::Fenced {
                        key: fence.key.clone(),
                        revision: fence.mod_revision,
                    });
                }
            }
            return Ok((Written::Conflict, responses));
        }
        let revision = response
            .header()
            .ok_or(EtcdError::MissingHeader { operation: "txn" })?
            .revision();
        Ok((Written::Done { revision }, Vec::new()))
    }
}

#[cfg(test)]
mod tests;
