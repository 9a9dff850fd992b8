//! Request/response latency on one TCP connection.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::percentiles;

pub fn run(target: SocketAddr, seconds: Duration, size: usize) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))
        .with_context(|| format!("connecting to {target}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let request = vec![0x5a; size];
    let mut answer = vec![0; size];
    let mut round_trips = Vec::new();
    let start = Instant::now();
    while start.elapsed() < seconds {
        let sent = Instant::now();
        stream.write_all(&request).context("sending a request")?;
        stream
            .read_exact(&mut answer)
            .context("reading the answer")?;
        round_trips.push(sent.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "round_trips": round_trips.len(),
        "seconds": elapsed,
        "p50_us": percentiles::micros(&mut round_trips, 50.0),
        "p99_us": percentiles::micros(&mut round_trips, 99.0),
    }))
}
