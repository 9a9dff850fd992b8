//! Keeping a client of several etcd members on the ones that answer.
//! etcd-client balances calls over every endpoint it was given, including
//! one whose member is gone, so a third of the calls would fail for as long
//! as one member of three is down. A task probes each member's client port
//! (a TCP connect) every [`PROBE_INTERVAL`] and takes the endpoint out of
//! the channel while it refuses, and back in once it answers; with no
//! member answering it leaves them all in, so calls fail at once instead of
//! waiting. It ends with the last clone of the [`crate::kv::Kv`].

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use etcd_client::Client;
use tokio::net::TcpStream;
use tracing::{info, warn};

/// How often each member is probed, and how long a probe may take: a
/// killed member is left within about twice this.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// `host:port` of an `http(s)://host:port` endpoint.
fn address(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

async fn answers(endpoint: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_INTERVAL, TcpStream::connect(address(endpoint))).await,
        Ok(Ok(_))
    )
}

/// The endpoints that answer now; all of them when none does.
pub(crate) async fn answering(endpoints: &[String]) -> BTreeSet<String> {
    let mut up = BTreeSet::new();
    for endpoint in endpoints {
        if answers(endpoint).await {
            up.insert(endpoint.clone());
        }
    }
    if up.is_empty() {
        endpoints.iter().cloned().collect()
    } else {
        up
    }
}

/// Follows `endpoints` for `client`, whose channel holds `current`, until
/// `owner` is dropped.
pub(crate) fn follow(
    client: Client,
    endpoints: Vec<String>,
    mut current: BTreeSet<String>,
    owner: Weak<()>,
) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROBE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if owner.upgrade().is_none() {
                return;
            }
            let wanted = answering(&endpoints).await;
            for gone in current.difference(&wanted) {
                info!(endpoint = gone, "etcd member not answering: leaving it");
                if let Err(error) = client.remove_endpoint(gone).await {
                    warn!(endpoint = gone, %error, "removing an etcd endpoint failed");
                }
            }
            for back in wanted.difference(&current) {
                info!(endpoint = back, "etcd member answering again: using it");
                if let Err(error) = client.add_endpoint(back).await {
                    warn!(endpoint = back, %error, "adding an etcd endpoint failed");
                }
            }
            current = wanted;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_host_and_port() {
        assert_eq!(address("https://172.30.0.1:2379"), "172.30.0.1:2379");
        assert_eq!(address("http://127.0.0.1:2379/"), "127.0.0.1:2379");
    }

    #[tokio::test]
    async fn with_no_member_answering_all_are_kept() {
        let port = crate::launcher::free_port().unwrap();
        let endpoints = vec![format!("http://127.0.0.1:{port}")];
        assert_eq!(answering(&endpoints).await, endpoints.into_iter().collect());
    }
}
