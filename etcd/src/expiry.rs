//! The etcd leases that expiring keys (Events) are written with. As
//! kube-apiserver's lease manager does, one lease serves every write of a
//! minute: it is granted for the time to live plus that minute, so a key
//! lives at least its time to live and at most a minute longer, and etcd
//! holds one lease per minute of writes instead of one per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::Client;

/// How long one lease is handed out for new writes.
const REUSE: Duration = Duration::from_secs(60);

/// A granted lease and when etcd drops it (and its keys).
#[derive(Debug, Clone, Copy)]
struct Granted {
    id: i64,
    expires: Instant,
}

/// The current lease for each time to live in use.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    current: Mutex<HashMap<Duration, Granted>>,
}

impl Leases {
    /// A lease under which a key written now lives at least `ttl`: the
    /// current one while it lasts long enough, else a new one.
    pub(crate) async fn for_ttl(
        &self,
        client: &Client,
        ttl: Duration,
    ) -> Result<i64, etcd_client::Error> {
        let now = Instant::now();
        let cached = self.lock().get(&ttl).copied();
        if let Some(granted) = cached
            && granted.expires > now + ttl
        {
            return Ok(granted.id);
        }
        let length = ttl + REUSE;
        let seconds = i64::try_from(length.as_secs()).unwrap_or(i64::MAX);
        let response = client.clone().lease_grant(seconds, None).await?;
        let granted = Granted {
            id: response.id(),
            expires: now + length,
        };
        self.lock().insert(ttl, granted);
        Ok(granted.id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Duration, Granted>> {
        // A panic while holding the map leaves it whole: at worst a lease
        // is granted again.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
