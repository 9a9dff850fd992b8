//! Connections per second: connect, one byte each way, reset.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::percentiles;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub fn run(target: SocketAddr, seconds: Duration) -> Result<Value> {
    let mut connect_times = Vec::new();
    let mut errors = 0u64;
    let mut last_error = None;
    let start = Instant::now();
    while start.elapsed() < seconds {
        match one(target) {
            Ok(connect) => connect_times.push(connect),
            Err(error) => {
                errors += 1;
                last_error = Some(error.to_string());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let connections = connect_times.len();
    if connections == 0 {
        bail!(
            "no connection to {target} completed ({errors} failed; last: {})",
            last_error.unwrap_or_default()
        );
    }
    Ok(json!({
        "connections": connections,
        "errors": errors,
        "seconds": elapsed,
        "per_second": connections as f64 / elapsed,
        "connect_p50_us": percentiles::micros(&mut connect_times, 50.0),
        "connect_p99_us": percentiles::micros(&mut connect_times, 99.0),
    }))
}

/// One connection; returns how long connect(2) took.
///
/// The client ends it with a RST (SO_LINGER 0). A FIN close leaves a
/// TIME_WAIT socket on one side; a tight loop soon reuses its port, and
/// whether the new SYN is let in then depends on TCP timestamps, which
/// differ between connecting to a VIP and to a pod: SYNs would stall for a
/// second in some variants and not others.
fn one(target: SocketAddr) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    let connected = started.elapsed();
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(b"x")?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer)?;
    reset_on_close(&stream)?;
    Ok(connected)
}

fn reset_on_close(stream: &TcpStream) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a linger of the stated size from a live value.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
