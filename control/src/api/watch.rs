//! Watches: newline-delimited `{"type":…,"object":…}` events streamed from
//! an etcd watch, filtered by the selectors, with bookmarks and a timeout.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::debug;

use super::path::Target;
use super::protobuf::{self, ProtobufError};
use super::query::Query;
use super::registry::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::{Api, Reply};
use crate::clock::unix_now;
use crate::store::{EventType, ListRequest, StoreError, Watch, WatchBatch, collection_prefix};

/// Events buffered per watcher before the watch waits for the client.
const BUFFER: usize = 64;

/// Starts a watch. With `resourceVersion` unset or "0" it begins with an
/// ADDED event per existing object, as kube-apiserver does; otherwise it
/// resumes after that revision.
/// With `table`, each object is sent as a one-row Table (`kubectl get -w`);
/// with `protobuf` (and no table), events are length-prefixed protobuf
/// `WatchEvent`s.
pub async fn start(
    api: &Api,
    target: &Target,
    query: &Query,
    table: bool,
    protobuf: bool,
) -> Result<Reply, ApiError> {
    let resource = target.resource;
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default(), resource)?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let timeout = query
        .number("timeoutSeconds")?
        .map(Duration::from_secs)
        .unwrap_or(api.config.default_watch_timeout);
    let prefix = collection_prefix(resource.storage, target.namespace.as_deref());
    let matches = move |object: &Value| labels.matches(object) && fields.matches(object);

    // A streaming list (`sendInitialEvents=true`, what client-go's
    // reflectors and `kubectl rollout status` use): the current objects,
    // then a bookmark marking the end of them.
    let initial_events_end = query.flag("sendInitialEvents")?;
    let mut initial = Vec::new();
    let after = match query.get("resourceVersion").filter(|_| !initial_events_end) {
        None | Some("0") => {
            let page = api
                .store
                .list(&prefix, ListRequest::default(), &matches)
                .await
                .map_err(|error| ApiError::from_store(error, resource, ""))?;
            initial = page.items;
            page.revision
        }
        // A revision is positive and the watch starts after it: i64::MAX
        // has no successor.
        Some(version) => version
            .parse::<i64>()
            .ok()
            .filter(|revision| (0..i64::MAX).contains(revision))
            .ok_or_else(|| ApiError::bad_request(format!("invalid resourceVersion {version:?}")))?,
    };
    let progress = bookmarks.then_some(api.config.bookmark_interval);
    let watch = api
        .store
        .watch(&prefix, after + 1, progress)
        .await
        .map_err(|error| ApiError::from_store(error, resource, ""))?;

    let (sender, receiver) = mpsc::channel(BUFFER);
    let protobuf = protobuf && !table;
    let stream = Stream {
        resource,
        sender,
        matches: Box::new(matches),
        sent_revision: after,
        table,
        protobuf,
    };
    tokio::spawn(stream.run(initial, initial_events_end, watch, timeout));
    Ok(Reply::Stream {
        content_type: if protobuf {
            protobuf::WATCH_MEDIA_TYPE
        } else {
            "application/json"
        },
        receiver,
    })
}

/// One watcher's sending side.
struct Stream {
    resource: &'static Resource,
    sender: mpsc::Sender<Bytes>,
    matches: Box<dyn Fn(&Value) -> bool + Send + Sync>,
    /// The revision the client has seen everything up to (for bookmarks).
    sent_revision: i64,
    /// Objects go out as one-row Tables.
    table: bool,
    /// Events go out as protobuf frames rather than JSON lines.
    protobuf: bool,
}

/// Why a stream stopped sending.
enum Stop {
    ClientGone,
    Failed(StoreError),
    /// An object that has no protobuf form (a defect: every served kind
    /// has one).
    Unencodable(ProtobufError),
}

impl Stream {
    async fn run(
        mut self,
        initial: Vec<Value>,
        initial_events_end: bool,
        mut watch: Watch,
        timeout: Duration,
    ) {
        for object in initial {
            if self.send_object("ADDED", object).await.is_err() {
                return;
            }
        }
        if initial_events_end {
            let mut bookmark = self.bookmark();
            bookmark["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
            if self.send("BOOKMARK", bookmark).await.is_err() {
                return;
            }
        }
        let sender = self.sender.clone();
        let result = tokio::select! {
            result = self.follow(&mut watch) => result,
            () = sender.closed() => Err(Stop::ClientGone),
            () = tokio::time::sleep(timeout) => Ok(()),
        };
        let status = match result {
            Err(Stop::Failed(StoreError::Compacted { revision })) => ApiError::gone(format!(
                "too old resource version: {} ({revision})",
                self.sent_revision
            )),
            Err(Stop::Failed(error)) if error.is_unavailable() => {
                ApiError::unavailable(error.to_string())
            }
            Err(Stop::Failed(error)) => ApiError::internal(error.to_string()),
            Err(Stop::Unencodable(error)) => ApiError::internal(error.to_string()),
            Ok(()) | Err(Stop::ClientGone) => return,
        };
        debug!(
            resource = self.resource.plural,
            message = status.message,
            "watch ended"
        );
        // The client may be gone already; nothing more to do then.
        let _ = self.send("ERROR", status.status()).await;
    }

    async fn follow(&mut self, watch: &mut Watch) -> Result<(), Stop> {
        loop {
            match watch.next().await.map_err(Stop::Failed)? {
                WatchBatch::Events(events) => {
                    for event in events {
                        let revision = crate::store::resource_version_of(&event.object);
                        if let Some((kind, object)) =
                            self.translate(event.event_type, event.object, event.previous)
                        {
                            self.send_object(kind, object).await?;
                        }
                        self.sent_revision = revision;
                    }
                }
                // A bookmark on every progress report, also when nothing
                // changed: it tells the client the watch is alive.
                WatchBatch::Progress { revision } => {
                    self.sent_revision = self.sent_revision.max(revision);
                    self.send("BOOKMARK", self.bookmark()).await?;
                }
            }
        }
    }

    /// A bookmark at the revision sent so far.
    fn bookmark(&self) -> Value {
        json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": { "resourceVersion": self.sent_revision.to_string() },
        })
    }

    /// The event the client sees, as kube-apiserver filters watches: an
    /// object that starts or stops matching the selectors is ADDED or
    /// DELETED for this watcher.
    fn translate(
        &self,
        event_type: EventType,
        object: Value,
        previous: Option<Value>,
    ) -> Option<(&'static str, Value)> {
        let now = (self.matches)(&object);
        let before = previous
            .as_ref()
            .is_some_and(|previous| (self.matches)(previous));
        match event_type {
            EventType::Added => now.then_some(("ADDED", object)),
            EventType::Deleted => now.then_some(("DELETED", object)),
            EventType::Modified => match (before, now) {
                (true, true) => Some(("MODIFIED", object)),
                (false, true) => Some(("ADDED", object)),
                (true, false) => Some(("DELETED", object)),
                (false, false) => None,
            },
        }
    }

    async fn send_object(&self, event_type: &str, object: Value) -> Result<(), Stop> {
        if !self.table {
            return self.send(event_type, object).await;
        }
        let metadata = json!({ "resourceVersion": object["metadata"]["resourceVersion"] });
        let table = super::table::table(self.resource, vec![object], metadata, unix_now());
        self.send(event_type, table).await
    }

    async fn send(&self, event_type: &str, object: Value) -> Result<(), Stop> {
        let encoded = if self.protobuf {
            protobuf::watch_frame(event_type, &object).map_err(Stop::Unencodable)?
        } else {
            let mut line = serde_json::to_vec(&json!({ "type": event_type, "object": object }))
                .expect("JSON values always serialize");
            line.push(b'\n');
            line
        };
        self.sender
            .send(Bytes::from(encoded))
            .await
            .map_err(|_| Stop::ClientGone)
    }
}
