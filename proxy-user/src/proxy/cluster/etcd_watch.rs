//! List and watch of Services and EndpointSlices straight from etcd, in
//! Kubernetes' own key layout, so the API server is never on the datapath's
//! update path. Any trouble ends in a reconnect and a full re-list: the
//! consumer always converges on what etcd holds.

use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KvClient, WatchOptions, WatchStream,
};
use tokio::sync::mpsc::Sender;
use tracing::{debug, info, warn};

use super::records::{ServiceRecord, SliceRecord};
use super::service_ref::ServiceRef;
use super::state::{ObjectChange, SliceRef};

/// Where Kubernetes keeps Services: `<prefix><namespace>/<name>`. (The
/// sibling `/registry/services/endpoints/` holds legacy Endpoints.)
const SERVICES_PREFIX: &str = "/registry/services/specs/";
/// Where Kubernetes keeps EndpointSlices: `<prefix><namespace>/<name>`.
const SLICES_PREFIX: &str = "/registry/endpointslices/";

/// Keys per list request, as the API server pages its own etcd lists: one
/// request for 100 000 objects would be hundreds of megabytes in one message.
const LIST_PAGE_SIZE: i64 = 500;

/// Largest gRPC message accepted from etcd. A full list page, or a watch
/// response batching a large transaction, exceeds tonic's 4 MiB default;
/// 500 objects at etcd's default 1.5 MiB object limit stay under 1 GiB.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// What the cluster watch reports to the agent.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// Everything etcd holds at `revision`. Sent on start and after every
    /// reconnect: the consumer replaces its whole view (events may have been
    /// missed in between).
    Resync {
        services: Vec<(ServiceRef, ServiceRecord)>,
        slices: Vec<(SliceRef, SliceRecord)>,
        revision: i64,
    },
    /// The changes of one watch response, in order; `revision` is that of
    /// the last one.
    Changes {
        changes: Vec<ObjectChange>,
        revision: i64,
        /// When the watch response arrived, so the consumer can measure
        /// how long a change takes to reach the datapath.
        received: std::time::Instant,
    },
}

/// Why a list/watch session ended. Each is followed by a reconnect and a
/// re-list, so the messages are written for the operator reading the log.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("etcd {operation} failed: {cause}")]
    Etcd {
        operation: &'static str,
        cause: etcd_client::Error,
    },
    #[error("etcd {operation} response has no header")]
    MissingHeader { operation: &'static str },
    #[error("watch from revision {start} was compacted (oldest kept: {compact_revision})")]
    Compacted { start: i64, compact_revision: i64 },
    #[error("etcd canceled the watch: {reason}")]
    Canceled { reason: String },
    #[error("etcd closed the watch stream")]
    StreamEnded,
}

/// An etcd entry that is not a usable object. Logged and skipped: one bad
/// value must not stop the node from following every other Service.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("key {key} is not <prefix><namespace>/<name>")]
    Key { key: String },
    #[error("value at {key} does not decode: {cause}")]
    Value {
        key: String,
        cause: serde_json::Error,
    },
}

/// Lists and then watches Services and EndpointSlices in etcd at
/// `endpoints`, sending what it sees to `tx`, reconnecting and re-listing
/// (with backoff) whenever etcd is unreachable or the watch breaks. Returns
/// only once `tx`'s receiver is gone.
pub async fn run(endpoints: Vec<String>, tx: Sender<ClusterEvent>) {
    let mut backoff = Backoff::default();
    loop {
        let outcome = tokio::select! {
            outcome = session(&endpoints, &tx, &mut backoff) => outcome,
            () = tx.closed() => Ok(ConsumerGone),
        };
        let error = match outcome {
            Ok(ConsumerGone) => {
                debug!("cluster event receiver closed; stopping the etcd watch");
                return;
            }
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        warn!(
            ?endpoints,
            %error,
            retry_in = ?delay,
            "etcd list/watch interrupted; will reconnect and re-list"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
    }
}

/// The receiver of cluster events was dropped: the agent is shutting down.
struct ConsumerGone;

/// One connection: list, send the snapshot, then follow the watch until it
/// fails.
async fn session(
    endpoints: &[String],
    tx: &Sender<ClusterEvent>,
    backoff: &mut Backoff,
) -> Result<ConsumerGone, WatchError> {
    // Keep-alives make a silently dead etcd (or path to it) end the watch
    // instead of leaving the node on stale state forever. Only while a call
    // is open (the watch always is): etcd answers pings on an idle
    // connection with GOAWAY.
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(false);
    let client = Client::connect(endpoints, Some(options))
        .await
        .map_err(etcd_error("connect"))?;
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let snapshot = list(&mut kv, LIST_PAGE_SIZE).await?;
    info!(
        revision = snapshot.revision,
        services = snapshot.services.len(),
        slices = snapshot.slices.len(),
        "listed services and endpointslices from etcd"
    );
    let revision = snapshot.revision;
    if tx.send(snapshot.into_event()).await.is_err() {
        return Ok(ConsumerGone);
    }
    let mut stream = start_watch(&client, revision).await?;
    follow(&mut stream, revision + 1, tx, backoff).await
}

/// Every Service and EndpointSlice at one revision.
struct Snapshot {
    services: Vec<(ServiceRef, ServiceRecord)>,
    slices: Vec<(SliceRef, SliceRecord)>,
    revision: i64,
}

impl Snapshot {
    fn into_event(self) -> ClusterEvent {
        ClusterEvent::Resync {
            services: self.services,
            slices: self.slices,
            revision: self.revision,
        }
    }
}

/// Lists both prefixes at one revision, so that no change falls between
/// the list and the watch that resumes right after it.
async fn list(kv: &mut KvClient, page_size: i64) -> Result<Snapshot, WatchError> {
    let (services, revision) = list_prefix(kv, SERVICES_PREFIX, 0, page_size).await?;
    let (slices, _) = list_prefix(kv, SLICES_PREFIX, revision, page_size).await?;
    Ok(Snapshot {
        services,
        slices,
        revision,
    })
}

/// Decodes every object under `prefix` at `revision` (0: the newest, which
/// the first page then pins for the rest). Returns the objects with their
/// names, and the revision read. Undecodable entries are logged and
/// skipped.
async fn list_prefix<T: Record>(
    kv: &mut KvClient,
    prefix: &str,
    revision: i64,
    page_size: i64,
) -> Result<(Vec<(ServiceRef, T)>, i64), WatchError> {
    let end = prefix_end(prefix);
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = revision;
    let mut objects = Vec::new();
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(page_size)
            .with_revision(revision);
        let mut response = kv
            .get(start.clone(), Some(options))
            .await
            .map_err(etcd_error("list"))?;
        if revision == 0 {
            revision = response
                .header()
                .ok_or(WatchError::MissingHeader { operation: "list" })?
                .revision();
        }
        let more = response.more();
        let kvs = response.take_kvs();
        // The next page starts just after this page's last key.
        if let Some(last) = kvs.last() {
            start = last.key().to_vec();
            start.push(0);
        }
        for entry in &kvs {
            match decode(prefix, entry.key(), entry.value()) {
                Ok(object) => objects.push(object),
                Err(error) => warn!(
                    key = %String::from_utf8_lossy(entry.key()),
                    revision,
                    %error,
                    "skipping undecodable object in etcd list"
                ),
            }
        }
        if !more || kvs.is_empty() {
            return Ok((objects, revision));
        }
    }
}

/// Watches both prefixes from just after `revision`, in one gRPC stream.
async fn start_watch(client: &Client, revision: i64) -> Result<WatchStream, WatchError> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watch = client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut stream = watch
        .watch(SERVICES_PREFIX, Some(options.clone()))
        .await
        .map_err(etcd_error("watch"))?;
    stream
        .watch(SLICES_PREFIX, Some(options))
        .await
        .map_err(etcd_error("watch"))?;
    Ok(stream)
}

/// Forwards the changes of a watch started at revision `start` until it
/// fails.
async fn follow(
    stream: &mut WatchStream,
    start: i64,
    tx: &Sender<ClusterEvent>,
    backoff: &mut Backoff,
) -> Result<ConsumerGone, WatchError> {
    loop {
        let response = stream
            .message()
            .await
            .map_err(etcd_error("watch"))?
            .ok_or(WatchError::StreamEnded)?;
        // etcd reports a compacted start revision by canceling with
        // `compact_revision` set; that needs a re-list like any cancel, but
        // the log should say which.
        if response.compact_revision() != 0 {
            return Err(WatchError::Compacted {
                start,
                compact_revision: response.compact_revision(),
            });
        }
        if response.canceled() {
            return Err(WatchError::Canceled {
                reason: response.cancel_reason().to_owned(),
            });
        }
        if response.created() {
            // A list and a live watch: etcd is healthy again.
            backoff.reset();
        }
        let received = std::time::Instant::now();
        let mut revision = 0;
        let mut changes = Vec::with_capacity(response.events().len());
        for event in response.events() {
            let Some(entry) = event.kv() else { continue };
            revision = entry.mod_revision();
            match change_of(event.event_type(), entry.key(), entry.value()) {
                Ok(change) => changes.push(change),
                // For a PUT this keeps the last good version of the object:
                // serving it beats dropping a Service over a bad write.
                Err(error) => warn!(
                    key = %String::from_utf8_lossy(entry.key()),
                    revision,
                    %error,
                    "skipping undecodable watch event"
                ),
            }
        }
        if changes.is_empty() {
            continue;
        }
        debug!(revision, changes = changes.len(), "etcd watch changes");
        if tx
            .send(ClusterEvent::Changes {
                changes,
                revision,
                received,
            })
            .await
            .is_err()
        {
            return Ok(ConsumerGone);
        }
    }
}

/// The change a watch event on `key` stands for.
fn change_of(event: EventType, key: &[u8], value: &[u8]) -> Result<ObjectChange, DecodeError> {
    let is_service = key.starts_with(SERVICES_PREFIX.as_bytes());
    let prefix = if is_service {
        SERVICES_PREFIX
    } else {
        SLICES_PREFIX
    };
    Ok(match (event, is_service) {
        (EventType::Put, true) => {
            let (svc, service) = decode(prefix, key, value)?;
            ObjectChange::ServiceUpsert(svc, service)
        }
        (EventType::Put, false) => {
            let (slice_ref, slice) = decode(prefix, key, value)?;
            ObjectChange::SliceUpsert(slice_ref, slice)
        }
        (EventType::Delete, true) => ObjectChange::ServiceDelete(key_name(prefix, key)?),
        (EventType::Delete, false) => ObjectChange::SliceDelete(key_name(prefix, key)?),
    })
}

/// What the agent keeps of one kind of object, read from its stored JSON.
trait Record: Sized {
    fn from_json(name: &ServiceRef, json: &[u8]) -> Result<Self, serde_json::Error>;
}

impl Record for ServiceRecord {
    fn from_json(name: &ServiceRef, json: &[u8]) -> Result<Self, serde_json::Error> {
        ServiceRecord::from_json(name, json)
    }
}

impl Record for SliceRecord {
    fn from_json(name: &ServiceRef, json: &[u8]) -> Result<Self, serde_json::Error> {
        SliceRecord::from_json(name, json)
    }
}

/// Decodes the Kubernetes JSON stored at `key`, with the object's name.
/// The key is the object's identity in etcd (a DELETE carries nothing
/// else), so the cache files the object under it even if the stored
/// metadata omits or contradicts it; otherwise its delete would miss.
fn decode<T: Record>(
    prefix: &str,
    key: &[u8],
    value: &[u8],
) -> Result<(ServiceRef, T), DecodeError> {
    let name = key_name(prefix, key)?;
    let record = T::from_json(&name, value).map_err(|cause| DecodeError::Value {
        key: String::from_utf8_lossy(key).into_owned(),
        cause,
    })?;
    Ok((name, record))
}

/// Namespace and name from `<prefix><namespace>/<name>`.
fn key_name(prefix: &str, key: &[u8]) -> Result<ServiceRef, DecodeError> {
    let (namespace, name) = parse_key(prefix, key).ok_or_else(|| DecodeError::Key {
        key: String::from_utf8_lossy(key).into_owned(),
    })?;
    Ok(ServiceRef {
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn parse_key(prefix: &str, key: &[u8]) -> Option<(String, String)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (namespace, name) = rest.split_once('/')?;
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some((namespace.to_owned(), name.to_owned()))
}

/// The end (exclusive) of the key range holding every key under `prefix`.
/// The prefixes here end in '/', whose successor '0' cannot overflow.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn etcd_error(operation: &'static str) -> impl FnOnce(etcd_client::Error) -> WatchError {
    move |cause| WatchError::Etcd { operation, cause }
}

/// Reconnect delays: 100 ms doubling to 5 s, back to 100 ms once a watch
/// is established.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

#[cfg(test)]
mod tests;
