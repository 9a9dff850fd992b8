//! Small UDP datagrams at the highest rate sendmmsg(2) reaches.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use crate::mmsg;
use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Datagrams per sendmmsg(2): enough to make the syscall cost small next to
/// the per-packet path under test.
const BATCH: usize = 64;

pub fn run(target: SocketAddr, seconds: Duration, size: usize, flows: usize) -> Result<Value> {
    let sockets = (0..flows.max(1))
        .map(|_| {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            socket.connect(target)?;
            Ok(socket)
        })
        .collect::<io::Result<Vec<_>>>()
        .with_context(|| format!("opening UDP sockets to {target}"))?;
    let payload = vec![0xa5u8; size];
    let mut iovecs: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    let mut headers = mmsg::headers(&mut iovecs);
    let (mut sent, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    let mut flow = 0;
    while start.elapsed() < seconds {
        let fd = sockets[flow].as_raw_fd();
        flow = (flow + 1) % sockets.len();
        // SAFETY: the headers point at iovecs and a payload that outlive the
        // call; the socket is connected, so no address is needed.
        let n = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            // ENOBUFS or ECONNREFUSED (an ICMP error from a missing sink):
            // count and go on, the sink's count is what matters.
            errors += 1;
        } else {
            sent += n as u64;
        }
    }
    Ok(json!({
        "sent": sent,
        "send_errors": errors,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}
