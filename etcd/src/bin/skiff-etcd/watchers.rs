//! One process of `watch-fanout`: many simulated agents, each with its own
//! gRPC connection and its own list-then-watch of the Service and
//! EndpointSlice prefixes, exactly as the agent follows them
//! (`ListWatch::new`, one connection per session). Prints `ready` once
//! every watcher has listed, then, for each probe change, one JSON line
//! once all of them have received it (in a watch response, or in the
//! re-list after a broken watch): its stamp and every watcher's delay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_etcd::keys::{ENDPOINT_SLICES, SERVICES, collection_prefix};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::{mpsc, oneshot};

use crate::stamp::{SENT_ANNOTATION, now_unix_nanos};

/// Watchers connecting and listing at once: 5 000 connects in one burst
/// would run into connect timeouts on a small machine, which is not what
/// this measures.
const CONNECT_BATCH: usize = 100;
/// File descriptors the process needs besides one per watcher.
const SPARE_FDS: u64 = 64;

/// One watcher's arrival of one probe change.
struct Arrival {
    sent_unix_nanos: u64,
    delay: Duration,
}

pub async fn run(endpoint: String, count: usize) -> Result<()> {
    raise_fd_limit(count as u64 + SPARE_FDS)?;
    let mut parent_done = parent_done();
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let (relisted, mut relists) = mpsc::unbounded_channel();
    for batch_start in (0..count).step_by(CONNECT_BATCH) {
        let mut ready = Vec::new();
        for _ in batch_start..count.min(batch_start + CONNECT_BATCH) {
            let (listed, listed_rx) = oneshot::channel();
            tokio::spawn(watcher(
                endpoint.clone(),
                listed,
                arrivals.clone(),
                relisted.clone(),
            ));
            ready.push(listed_rx);
        }
        for listed in ready {
            tokio::select! {
                listed = listed => listed.context("a watcher stopped before its first list")?,
                _ = &mut parent_done => return Ok(()),
            }
        }
    }
    println!("ready");
    let mut pending: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut relist_count = 0usize;
    loop {
        tokio::select! {
            arrival = arrived.recv() => {
                let Some(Arrival { sent_unix_nanos, delay }) = arrival else { bail!("every watcher stopped") };
                let delays = pending.entry(sent_unix_nanos).or_default();
                delays.push(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
                if delays.len() == count {
                    let delays_us = pending.remove(&sent_unix_nanos).unwrap_or_default();
                    let line = serde_json::json!({
                        "sent_unix_nanos": sent_unix_nanos,
                        "delays_us": delays_us,
                        "relists": relist_count,
                    });
                    println!("{line}");
                }
            }
            Some(()) = relists.recv() => relist_count += 1,
            _ = &mut parent_done => {
                for (sent_unix_nanos, delays) in pending {
                    eprintln!(
                        "skiff-etcd watchers: the change stamped {sent_unix_nanos} reached {} of {count} watchers",
                        delays.len()
                    );
                }
                return Ok(());
            }
        }
    }
}

/// Resolves when standard input ends: the parent closes it when it is
/// done, and it closes by itself when the parent is gone.
fn parent_done() -> oneshot::Receiver<()> {
    let (done, done_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = done.send(());
    });
    done_rx
}

/// One simulated agent: reports its first list on `listed`, every later
/// re-list (a broken watch) on `relisted`, and each probe change it sees.
async fn watcher(
    endpoint: String,
    listed: oneshot::Sender<()>,
    arrivals: mpsc::UnboundedSender<Arrival>,
    relisted: mpsc::UnboundedSender<()>,
) {
    let prefixes = vec![
        collection_prefix(SERVICES, None),
        collection_prefix(ENDPOINT_SLICES, None),
    ];
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(
        ListWatch::new(vec![endpoint], prefixes, Stamps).run::<Event<(), Option<u64>>>(tx),
    );
    let mut listed = Some(listed);
    // Stamps only grow: a re-list after the watch already delivered a
    // change must not count that change twice.
    let mut last_seen = 0;
    while let Some(event) = rx.recv().await {
        let seen: Vec<(u64, Instant)> = match event {
            Event::Resync { objects, .. } => match listed.take() {
                Some(listed) => {
                    let _ = listed.send(());
                    continue;
                }
                // A broken watch: the agent learns the probe's state from
                // the re-list, so that is when the change reached it.
                None => {
                    let _ = relisted.send(());
                    let now = Instant::now();
                    let stamps = objects.into_iter().filter_map(|((), stamp)| stamp);
                    stamps.map(|stamp| (stamp, now)).collect()
                }
            },
            Event::Changes {
                changes, received, ..
            } => changes
                .into_iter()
                .filter_map(|change| match change {
                    Change::Put((), Some(stamp)) => Some((stamp, received)),
                    _ => None,
                })
                .collect(),
        };
        for (sent_unix_nanos, received) in seen {
            if sent_unix_nanos <= last_seen {
                continue;
            }
            last_seen = sent_unix_nanos;
            let delay = arrival_delay(sent_unix_nanos, received);
            let arrival = Arrival {
                sent_unix_nanos,
                delay,
            };
            if arrivals.send(arrival).is_err() {
                return;
            }
        }
    }
}

/// From the writer's stamp to when the watch response arrived (not to now:
/// the hand-over to this task is not etcd's delay).
fn arrival_delay(sent_unix_nanos: u64, received: Instant) -> Duration {
    let since_sent = Duration::from_nanos(now_unix_nanos().saturating_sub(sent_unix_nanos));
    since_sent.saturating_sub(received.elapsed())
}

/// Reads the writer's stamp from a Service; every other object (and a
/// Service without one) decodes to `None`.
struct Stamps;

impl Decoder for Stamps {
    type Key = ();
    type Value = Option<u64>;

    fn key(&self, _: &[u8]) -> Option<()> {
        Some(())
    }

    fn value(&self, _: &(), value: &[u8], _: i64) -> Result<Option<u64>, serde_json::Error> {
        let object: serde_json::Value = serde_json::from_slice(value)?;
        Ok(object["metadata"]["annotations"][SENT_ANNOTATION]
            .as_str()
            .and_then(|stamp| stamp.parse().ok()))
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, and fails early when
/// even that is below `needed`.
fn raise_fd_limit(needed: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
    }
    if limit.rlim_max < needed {
        bail!(
            "{needed} file descriptors needed, but RLIMIT_NOFILE's hard limit is {}: use more processes",
            limit.rlim_max
        );
    }
    Ok(())
}
