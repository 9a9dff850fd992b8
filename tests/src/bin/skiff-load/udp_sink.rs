//! Counts UDP datagrams: the delivered side of the NodePort pps figure.

use std::{
    io,
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use crate::mmsg;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const BATCH: usize = 64;
/// A large receive buffer, so bursts are counted rather than dropped at the
/// socket while the sink is descheduled.
const RCVBUF_BYTES: usize = 32 << 20;
/// How long to wait for the sender to start.
const FIRST_WAIT: Duration = Duration::from_secs(10);

pub fn run(port: u16, idle: Duration) -> Result<Value> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding UDP {port}"))?;
    let fd = socket.as_raw_fd();
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN (we are root); without it the
    // default buffer only makes the count a little lower.
    let _ = set_option(fd, libc::SO_RCVBUFFORCE, &(RCVBUF_BYTES as libc::c_int));
    socket.set_read_timeout(Some(FIRST_WAIT))?;
    println!("ready");
    let mut buffers = vec![[0u8; 64]; BATCH];
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|buffer| libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        })
        .collect();
    let mut headers = mmsg::headers(&mut iovecs);
    let (mut packets, mut first, mut last) = (0u64, None, Instant::now());
    loop {
        // SAFETY: the headers point at iovecs and buffers that outlive the
        // call. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for one datagram,
        // then take whatever else is queued.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                // The timeout: the sender has stopped (or never started).
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => break,
                _ => return Err(error).context("recvmmsg"),
            }
        }
        last = Instant::now();
        if first.is_none() {
            first = Some(last);
            socket.set_read_timeout(Some(idle))?;
        }
        packets += n as u64;
    }
    let Some(first) = first else {
        bail!("no datagram arrived within {FIRST_WAIT:?}");
    };
    let seconds = last.duration_since(first).as_secs_f64();
    Ok(json!({
        "packets": packets,
        "seconds": seconds,
        "per_second": if seconds > 0.0 { packets as f64 / seconds } else { 0.0 },
    }))
}

fn set_option(fd: libc::c_int, option: libc::c_int, value: &libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads a c_int of the stated size from a live reference.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
