//! One etcd watch, translated into Kubernetes watch events.

use std::time::Duration;

use serde_json::Value;
use std::sync::Arc;

use skiff_etcd::etcd_client::{
    Event, EventType as EtcdEventType, KeyValue, WatchResponse, WatchStream,
};
use skiff_etcd::kv::EtcdError;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::warn;

use super::codec::decode;
use super::encryption::Encryption;
use super::error::StoreError;

/// Kubernetes' watch event types for object changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change. The object carries the revision of the change as its
/// resourceVersion; a deleted object is its last state at the deletion's
/// revision.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub object: Value,
    /// The object before a modification (selectors filter on both).
    pub previous: Option<Value>,
}

/// What one call to [`Watch::next`] yields.
#[derive(Debug, Clone)]
pub enum WatchBatch {
    /// Changes in revision order.
    Events(Vec<WatchEvent>),
    /// Every change up to `revision` has been delivered.
    Progress { revision: i64 },
}

/// A running watch over a key range.
pub struct Watch {
    stream: WatchStream,
    encryption: Arc<Encryption>,
    progress: Option<Interval>,
}

impl Watch {
    pub(super) fn new(
        stream: WatchStream,
        encryption: Arc<Encryption>,
        progress_every: Option<Duration>,
    ) -> Self {
        let progress = progress_every.map(|period| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Self {
            stream,
            encryption,
            progress,
        }
    }

    /// The next batch of changes or progress report. Fails with `Compacted`
    /// when the start revision is no longer in etcd's history.
    pub async fn next(&mut self) -> Result<WatchBatch, StoreError> {
        loop {
            let response = tokio::select! {
                message = self.stream.message() => message,
                _ = tick(&mut self.progress) => {
                    self.stream
                        .request_progress()
                        .await
                        .map_err(EtcdError::of("watch progress", 0))?;
                    continue;
                }
            };
            let response = response
                .map_err(EtcdError::of("watch", 0))?
                .ok_or(StoreError::WatchClosed)?;
            if let Some(batch) = translate(&self.encryption, &response)? {
                return Ok(batch);
            }
        }
    }
}

/// Waits for the next progress tick; never, without progress reports.
async fn tick(progress: &mut Option<Interval>) {
    match progress {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The batch a watch response stands for; `None` for the creation
/// acknowledgement, whose header revision says nothing about delivery.
fn translate(
    encryption: &Encryption,
    response: &WatchResponse,
) -> Result<Option<WatchBatch>, StoreError> {
    if response.canceled() {
        return Err(if response.compact_revision() > 0 {
            StoreError::Compacted {
                revision: response.compact_revision(),
            }
        } else {
            StoreError::WatchCanceled {
                reason: response.cancel_reason().to_owned(),
            }
        });
    }
    if response.created() {
        return Ok(None);
    }
    if response.events().is_empty() {
        let revision = response
            .header()
            .ok_or(EtcdError::MissingHeader { operation: "watch" })?
            .revision();
        return Ok(Some(WatchBatch::Progress { revision }));
    }
    let mut events = Vec::with_capacity(response.events().len());
    for event in response.events() {
        // A value that does not decode (written past the API) is skipped,
        // as kube-apiserver's watch cache does, so one bad key cannot end
        // every watch of its collection.
        match translate_event(encryption, event) {
            Ok(Some(translated)) => events.push(translated),
            Ok(None) => {}
            Err(error) => warn!(%error, "skipping a watch event"),
        }
    }
    Ok(Some(WatchBatch::Events(events)))
}

fn translate_event(
    encryption: &Encryption,
    event: &Event,
) -> Result<Option<WatchEvent>, StoreError> {
    let Some(kv) = event.kv() else {
        return Ok(None);
    };
    Ok(Some(match event.event_type() {
        EtcdEventType::Put => WatchEvent {
            event_type: if kv.create_revision() == kv.mod_revision() {
                EventType::Added
            } else {
                EventType::Modified
            },
            object: decode_kv(encryption, kv, kv.mod_revision())?,
            // An undecodable previous value (the object was repaired) is
            // as if there were none.
            previous: event.prev_kv().and_then(|previous| {
                decode_kv(encryption, previous, previous.mod_revision())
                    .inspect_err(|error| warn!(%error, "ignoring the previous value"))
                    .ok()
            }),
        },
        EtcdEventType::Delete => {
            let previous = event.prev_kv().ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                reason: "etcd sent a deletion without the previous value".into(),
            })?;
            WatchEvent {
                event_type: EventType::Deleted,
                object: decode_kv(encryption, previous, kv.mod_revision())?,
                previous: None,
            }
        }
    }))
}

fn decode_kv(encryption: &Encryption, kv: &KeyValue, revision: i64) -> Result<Value, StoreError> {
    decode(encryption, kv.key(), kv.value(), revision)
}
