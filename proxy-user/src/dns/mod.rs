//! Cluster DNS, served by every agent on its node's address, port 53 (UDP
//! and TCP), as the Kubernetes DNS specification names Services, their
//! endpoints and pods. What it answers from (`index`) is kept by the
//! service proxy's sync loop from the same Service and EndpointSlice
//! records the datapath is programmed from, so a change reaches DNS when
//! it reaches the maps. `names` reads a query name, `answer` makes the
//! records, `server` is hickory-server's request handler, and `forward`
//! asks the upstream servers about names outside the cluster.

mod answer;
mod forward;
pub mod index;
mod names;
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

pub use self::index::SharedIndex;

/// This node's cluster DNS server, as the service proxy sees it: where it
/// listens (the local backend of `kube-system/kube-dns`), and the index
/// the proxy's sync loop keeps for it.
#[derive(Debug, Clone)]
pub struct LocalDns {
    pub server: std::net::SocketAddrV4,
    pub index: SharedIndex,
}

/// How long a TCP client may stay idle between queries.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;
/// How often to try the DNS address again while another process holds it
/// (an agent being replaced by this one).
const BIND_RETRY: Duration = Duration::from_secs(1);

/// What the DNS server is started with (from the agent's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where queries are served: the node's address, port 53.
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Where names outside the cluster are asked; none refuses them.
    pub upstreams: Vec<SocketAddr>,
}

/// Serves cluster DNS from `index` until the sockets fail.
pub async fn serve(config: Config, index: SharedIndex) -> anyhow::Result<()> {
    let zone = answer::Zone::new(&config.domain)
        .with_context(|| format!("the cluster domain {}", config.domain))?;
    let (udp, tcp) = bind(config.listen).await?;
    let mut server = Server::new(server::Handler {
        index,
        zone,
        forwarder: forward::Forwarder::new(config.upstreams.clone()),
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    info!(
        listen = %config.listen,
        domain = %config.domain,
        upstreams = ?config.upstreams,
        "serving cluster DNS"
    );
    server
        .block_until_done()
        .await
        .with_context(|| format!("serving DNS on {}", config.listen))
}

/// The UDP socket and TCP listener on `listen`, waiting while another
/// process (the agent this one replaces) still holds the address.
async fn bind(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    loop {
        let bound = async {
            Ok::<_, std::io::Error>((
                UdpSocket::bind(listen).await?,
                TcpListener::bind(listen).await?,
            ))
        };
        match bound.await {
            Ok(sockets) => return Ok(sockets),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                warn!(%listen, "the DNS address is in use; retrying in {BIND_RETRY:?}");
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("binding DNS to {listen} (UDP and TCP)"));
            }
        }
    }
}
