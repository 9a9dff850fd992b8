//! List, then watch, a few key prefixes, forever: the consumer gets every
//! object at one revision, then the changes from just after it. Any
//! trouble (etcd unreachable, the watch canceled or compacted away) ends in
//! a reconnect with backoff and a full re-list, so the consumer always
//! converges on what etcd holds.

use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions, WatchStream};
use tokio::sync::mpsc::Sender;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::kv::{EtcdError, KeyRange, Kv};

/// Keys per list request, as the API server pages its own etcd lists: one
/// request for 100 000 objects would be hundreds of megabytes in one
/// message.
pub const LIST_PAGE_SIZE: i64 = 500;

/// How a consumer reads the keys and values under the watched prefixes.
pub trait Decoder: Send + Sync + 'static {
    /// An object's identity, from its key alone (a DELETE carries nothing
    /// else).
    type Key: Send + 'static;
    type Value: Send + 'static;

    /// `None` for a key that is not an object's: skipped with a warning.
    fn key(&self, key: &[u8]) -> Option<Self::Key>;

    /// The object stored at `key`, written at `mod_revision`. An error
    /// skips the entry with a warning: one bad value must not hide the
    /// others.
    fn value(
        &self,
        key: &Self::Key,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Self::Value, serde_json::Error>;
}

/// What the list-then-watch reports.
#[derive(Debug, Clone)]
pub enum Event<K, V> {
    /// Every object under the prefixes at `revision`, prefix by prefix in
    /// key order. Sent on start and after every reconnect: the consumer
    /// replaces its whole view (changes may have been missed in between).
    Resync { objects: Vec<(K, V)>, revision: i64 },
    /// The changes of one watch response, in order; `revision` is that of
    /// the last one. No changes at all is a progress report (see
    /// [`ListWatch::with_progress`]): every change up to `revision` has
    /// been sent.
    Changes {
        changes: Vec<Change<K, V>>,
        revision: i64,
        /// When the watch response arrived, so that the consumer can
        /// measure how long a change takes to reach it.
        received: Instant,
    },
}

#[derive(Debug, Clone)]
pub enum Change<K, V> {
    Put(K, V),
    Delete(K),
}

/// Why a list/watch session ended. Each is followed by a reconnect and a
/// re-list, so the messages are written for the operator reading the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("etcd watch failed: {0}")]
    Watch(etcd_client::Error),
    #[error("watch from revision {start} was compacted (oldest kept: {compact_revision})")]
    Compacted { start: i64, compact_revision: i64 },
    #[error("etcd canceled the watch: {reason}")]
    Canceled { reason: String },
    #[error("etcd closed the watch stream")]
    StreamEnded,
}

/// The receiver of events was dropped: the consumer is shutting down.
pub(crate) struct ConsumerGone;

/// Where a list-then-watch reaches etcd.
enum Source {
    /// A connection of its own, made again for every session: what a
    /// long-lived follower on another host wants.
    Endpoints(Vec<String>),
    /// A shared connection (it reconnects by itself).
    Shared(Box<Kv>),
}

/// A list-then-watch of `prefixes`.
pub struct ListWatch<D> {
    source: Source,
    prefixes: Vec<String>,
    decoder: D,
    page_size: i64,
    progress_every: Option<Duration>,
}

impl<D: Decoder> ListWatch<D> {
    /// Follows `prefixes` (each should end in `/`, see
    /// [`crate::keys::collection_prefix`]) in the etcd at `endpoints`.
    pub fn new(endpoints: Vec<String>, prefixes: Vec<String>, decoder: D) -> Self {
        Self::from_source(Source::Endpoints(endpoints), prefixes, decoder)
    }

    /// Follows `prefixes` through an existing connection.
    pub fn shared(kv: Kv, prefixes: Vec<String>, decoder: D) -> Self {
        Self::from_source(Source::Shared(Box::new(kv)), prefixes, decoder)
    }

    fn from_source(source: Source, prefixes: Vec<String>, decoder: D) -> Self {
        Self {
            source,
            prefixes,
            decoder,
            page_size: LIST_PAGE_SIZE,
            progress_every: None,
        }
    }

    /// Asks etcd this often how far the watch has got, which comes as
    /// changes-free [`Event::Changes`]: a consumer waiting to see a
    /// revision is then not kept waiting by prefixes nobody writes.
    pub fn with_progress(mut self, every: Duration) -> Self {
        self.progress_every = Some(every);
        self
    }

    /// Lists `page_size` keys per request instead of [`LIST_PAGE_SIZE`].
    pub fn with_page_size(mut self, page_size: i64) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sends what it sees to `tx`, reconnecting and re-listing (with
    /// backoff) whenever etcd is unreachable or the watch breaks. Returns
    /// only once `tx`'s receiver is gone.
    pub async fn run<E>(self, tx: Sender<E>)
    where
        E: From<Event<D::Key, D::Value>> + Send,
    {
        let mut backoff = Backoff::default();
        loop {
            let outcome = tokio::select! {
                outcome = self.session(&tx, &mut backoff) => outcome,
                () = tx.closed() => Ok(ConsumerGone),
            };
            let error = match outcome {
                Ok(ConsumerGone) => {
                    debug!(prefixes = ?self.prefixes, "event receiver closed; stopping the etcd watch");
                    return;
                }
                Err(error) => error,
            };
            let delay = backoff.next_delay();
            warn!(
                prefixes = ?self.prefixes,
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

    /// One connection: list, send the snapshot, then follow the watch
    /// until it fails.
    async fn session<E>(
        &self,
        tx: &Sender<E>,
        backoff: &mut Backoff,
    ) -> Result<ConsumerGone, SessionError>
    where
        E: From<Event<D::Key, D::Value>> + Send,
    {
        let kv = match &self.source {
            Source::Endpoints(endpoints) => Kv::connect(endpoints).await?,
            Source::Shared(kv) => Kv::clone(kv),
        };
        let (objects, revision) = self.list(&kv).await?;
        info!(
            revision,
            objects = objects.len(),
            prefixes = ?self.prefixes,
            "listed from etcd"
        );
        if tx
            .send(Event::Resync { objects, revision }.into())
            .await
            .is_err()
        {
            return Ok(ConsumerGone);
        }
        let mut stream = self.start_watch(&kv, revision).await?;
        self.follow(&mut stream, revision + 1, tx, backoff).await
    }

    /// Decodes every object under the prefixes at one revision (the first
    /// page's), so that no change falls between the list and the watch
    /// that resumes right after it. Undecodable entries are logged and
    /// skipped.
    pub(crate) async fn list(
        &self,
        kv: &Kv,
    ) -> Result<(Vec<(D::Key, D::Value)>, i64), SessionError> {
        let mut revision = 0;
        let mut objects = Vec::new();
        for prefix in &self.prefixes {
            let mut range = KeyRange::prefix(prefix);
            loop {
                let page = kv.page(&range, revision, Some(self.page_size)).await?;
                revision = page.revision;
                for entry in &page.entries {
                    if let Some(object) = self.decode(&entry.key, &entry.value, entry.mod_revision)
                    {
                        objects.push(object);
                    }
                }
                match page.entries.last() {
                    Some(last) if page.more => range = range.after(&last.key),
                    _ => break,
                }
            }
        }
        Ok((objects, revision))
    }

    /// Watches every prefix from just after `revision`, in one gRPC stream.
    pub(crate) async fn start_watch(
        &self,
        kv: &Kv,
        revision: i64,
    ) -> Result<WatchStream, SessionError> {
        let mut watch = kv.watch_client();
        let mut stream: Option<WatchStream> = None;
        for prefix in &self.prefixes {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            match &mut stream {
                None => {
                    stream = Some(
                        watch
                            .watch(prefix.as_str(), Some(options))
                            .await
                            .map_err(SessionError::Watch)?,
                    )
                }
                Some(stream) => stream
                    .watch(prefix.as_str(), Some(options))
                    .await
                    .map_err(SessionError::Watch)?,
            }
        }
        stream.ok_or(SessionError::StreamEnded)
    }

    /// Forwards the changes of a watch started at revision `start` until
    /// it fails.
    pub(crate) async fn follow<E>(
        &self,
        stream: &mut WatchStream,
        start: i64,
        tx: &Sender<E>,
        backoff: &mut Backoff,
    ) -> Result<ConsumerGone, SessionError>
    where
        E: From<Event<D::Key, D::Value>> + Send,
    {
        let mut progress = self.progress_every.map(|period| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        loop {
            let response = tokio::select! {
                response = stream.message() => response,
                () = tick(&mut progress) => {
                    stream.request_progress().await.map_err(SessionError::Watch)?;
                    continue;
                }
            };
            let response = response
                .map_err(SessionError::Watch)?
                .ok_or(SessionError::StreamEnded)?;
            // etcd reports a compacted start revision by canceling with
            // `compact_revision` set; that needs a re-list like any cancel,
            // but the log should say which.
            if response.compact_revision() != 0 {
                return Err(SessionError::Compacted {
                    start,
                    compact_revision: response.compact_revision(),
                });
            }
            if response.canceled() {
                return Err(SessionError::Canceled {
                    reason: response.cancel_reason().to_owned(),
                });
            }
            if response.created() {
                // A list and a live watch: etcd is healthy again. (The
                // creation's header says nothing about delivery.)
                backoff.reset();
                continue;
            }
            let received = Instant::now();
            if response.events().is_empty() {
                // A progress report; passed on only to who asked for them.
                let Some(header) = response.header().filter(|_| progress.is_some()) else {
                    continue;
                };
                let event = Event::Changes {
                    changes: Vec::new(),
                    revision: header.revision(),
                    received,
                };
                if tx.send(event.into()).await.is_err() {
                    return Ok(ConsumerGone);
                }
                continue;
            }
            let mut revision = 0;
            let mut changes = Vec::with_capacity(response.events().len());
            for event in response.events() {
                let Some(entry) = event.kv() else { continue };
                revision = entry.mod_revision();
                let change = match event.event_type() {
                    // For a PUT that does not decode the consumer keeps the
                    // last good version of the object: serving it beats
                    // dropping it over a bad write.
                    EventType::Put => self
                        .decode(entry.key(), entry.value(), entry.mod_revision())
                        .map(|(key, value)| Change::Put(key, value)),
                    EventType::Delete => self.key(entry.key()).map(Change::Delete),
                };
                changes.extend(change);
            }
            if changes.is_empty() {
                continue;
            }
            debug!(revision, changes = changes.len(), "etcd watch changes");
            let event = Event::Changes {
                changes,
                revision,
                received,
            };
            if tx.send(event.into()).await.is_err() {
                return Ok(ConsumerGone);
            }
        }
    }

    fn key(&self, key: &[u8]) -> Option<D::Key> {
        let decoded = self.decoder.key(key);
        if decoded.is_none() {
            warn!(
                key = %String::from_utf8_lossy(key),
                "skipping a key that names no object"
            );
        }
        decoded
    }

    fn decode(&self, key: &[u8], value: &[u8], mod_revision: i64) -> Option<(D::Key, D::Value)> {
        let name = self.key(key)?;
        match self.decoder.value(&name, value, mod_revision) {
            Ok(value) => Some((name, value)),
            Err(error) => {
                warn!(
                    key = %String::from_utf8_lossy(key),
                    mod_revision,
                    %error,
                    "skipping an undecodable object"
                );
                None
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

#[cfg(test)]
mod tests;
