//! How long a new Service takes to be usable from a pod: prints `ready`,
//! waits for a line on stdin (sent just before the Service is created),
//! then times, from that line, until its name resolves to its ClusterIP
//! (when a DNS server is given) and until a TCP connection to its
//! ClusterIP is accepted (its frontend is in the datapath and reaches a
//! backend). Both are polled alternately, each as fast as it answers.

use std::{
    io::{BufRead, ErrorKind},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hickory_proto::op::Message;
use serde_json::{Value, json};

use crate::dns::{addresses, parse_names, query};

/// One poll's wait for an answer or a connection.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

pub fn run(
    dns: Option<SocketAddr>,
    name: &str,
    service: SocketAddrV4,
    timeout: Duration,
) -> Result<Value> {
    let name = parse_names(&[name.to_owned()])?.remove(0);
    let resolver = match dns {
        Some(server) => {
            let socket = UdpSocket::bind(("0.0.0.0", 0)).context("binding a UDP socket")?;
            socket.set_read_timeout(Some(POLL_TIMEOUT))?;
            Some((socket, server))
        }
        None => None,
    };
    println!("ready");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("waiting for the start line")?;
    let start = Instant::now();
    let mut resolved: Option<Duration> = None;
    let mut connected: Option<Duration> = None;
    let mut id: u16 = 0;
    let mut buffer = [0u8; 4096];
    loop {
        if let (None, Some((socket, server))) = (resolved, &resolver) {
            id = id.wrapping_add(1);
            // Unconnected: a refused send (no frontend for the server's
            // address yet) must not stick to the socket.
            let sent = socket.send_to(&query(&name, id)?, server);
            if sent.is_ok() && answers_with(socket, &mut buffer, id, service)? {
                resolved = Some(start.elapsed());
            }
        }
        if connected.is_none() && TcpStream::connect_timeout(&service.into(), POLL_TIMEOUT).is_ok()
        {
            connected = Some(start.elapsed());
        }
        if connected.is_some() && (resolved.is_some() || resolver.is_none()) {
            break;
        }
        if start.elapsed() > timeout {
            bail!(
                "after {timeout:?}: {name} {}, {service} {}",
                if resolved.is_some() {
                    "resolved"
                } else {
                    "did not resolve"
                },
                if connected.is_some() {
                    "accepted a connection"
                } else {
                    "accepted no connection"
                }
            );
        }
    }
    let millis = |elapsed: Option<Duration>| elapsed.map(|e| e.as_secs_f64() * 1000.0);
    Ok(json!({
        "dns_ms": millis(resolved),
        "datapath_ms": millis(connected),
    }))
}

/// Whether the answer to query `id` holds the Service's address.
fn answers_with(
    socket: &UdpSocket,
    buffer: &mut [u8],
    id: u16,
    service: SocketAddrV4,
) -> Result<bool> {
    loop {
        let length = match socket.recv(buffer) {
            Ok(length) => length,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(false);
            }
            Err(error) => return Err(error).context("receiving a DNS answer"),
        };
        let Ok(answer) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        // An answer to an earlier, timed-out query: read on.
        if answer.metadata.id != id {
            continue;
        }
        return Ok(addresses(&answer).is_ok_and(|found| found.contains(service.ip())));
    }
}
