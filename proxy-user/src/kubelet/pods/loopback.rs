//! Connections to a port on a pod's own loopback, for `kubectl
//! port-forward`: the socket is made by a thread that first joins the
//! pod's netns, so it lives there (and reaches what listens only on
//! 127.0.0.1) whatever netns the agent runs in. The thread ends right
//! after, taking its changed netns with it.
use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sched::{CloneFlags, setns};
use tokio::{net::TcpStream, sync::oneshot};

use super::{Config, netns, pod_key::PodKey};

/// How long a connection to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PodPorts {
    netns_prefix: String,
}

impl PodPorts {
    pub fn new(config: &Config) -> Self {
        Self {
            netns_prefix: config.netns_prefix.clone(),
        }
    }

    /// The pod's netns, there only while the pod runs on this node.
    pub fn netns(&self, pod: &PodKey) -> PathBuf {
        netns::path_of(&pod.netns(&self.netns_prefix))
    }

    /// A connection to `127.0.0.1:port` in the pod's netns.
    pub async fn connect(&self, pod: &PodKey, port: u16) -> io::Result<TcpStream> {
        let netns = self.netns(pod);
        let (sender, made) = oneshot::channel();
        std::thread::spawn(move || sender.send(connect_in(&netns, port)));
        let stream = made
            .await
            .map_err(|_| io::Error::other("the thread joining the pod's netns ended"))??;
        stream.set_nonblocking(true)?;
        TcpStream::from_std(stream)
    }
}

fn connect_in(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    let file = File::open(netns).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("the pod's netns {}: {error}", netns.display()),
        )
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
}
