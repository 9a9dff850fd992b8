//! Names outside the cluster go to the configured upstream servers, tried
//! in order, over UDP. None is configured in the local cluster, which has
//! no route out: then nothing is ever sent.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::net::UdpSocket;
use tracing::debug;

/// How long one upstream may take to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest UDP answer read (EDNS payloads beyond this are rare).
const MAX_UDP_ANSWER: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self { upstreams }
    }

    pub fn is_configured(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// The first answer an upstream gives to the query `raw` (its id
    /// `id`); `None` when none answers.
    pub async fn forward(&self, raw: &[u8], id: u16) -> Option<Message> {
        for &upstream in &self.upstreams {
            match tokio::time::timeout(UPSTREAM_TIMEOUT, ask(upstream, raw, id)).await {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(error)) => debug!(%upstream, %error, "upstream DNS server failed"),
                Err(_) => debug!(%upstream, "upstream DNS server timed out"),
            }
        }
        None
    }
}

async fn ask(upstream: SocketAddr, raw: &[u8], id: u16) -> std::io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(raw).await?;
    let mut buffer = vec![0; MAX_UDP_ANSWER];
    loop {
        let len = socket.recv(&mut buffer).await?;
        // A stray or late datagram is not this query's answer.
        match Message::from_vec(&buffer[..len]) {
            Ok(answer) if answer.metadata.id == id => return Ok(answer),
            _ => continue,
        }
    }
}
