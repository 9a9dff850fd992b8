//! skiff-load: the load generators and sinks of `cargo xtask bench`. Each
//! client runs for a fixed time and prints one JSON object on stdout; the
//! servers print `ready` once their ports are bound.

mod crr;
mod dns;
mod mmsg;
mod percentiles;
mod propagation;
mod rr;
mod serve;
mod udp_blast;
mod udp_sink;

use std::{
    net::{SocketAddr, SocketAddrV4},
    time::Duration,
};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Load generators and sinks for skiff's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// TCP servers: on --crr each connection gets its request echoed, one
    /// connection at a time; on --rr every chunk is echoed until EOF.
    Serve {
        #[arg(long, value_name = "PORT")]
        crr: u16,
        #[arg(long, value_name = "PORT")]
        rr: u16,
    },
    /// New connections per second: connect, send one byte, read the answer,
    /// reset, in a tight loop.
    Crr {
        target: SocketAddr,
        #[arg(long, value_parser = seconds)]
        seconds: Duration,
    },
    /// Request/response latency: 64-byte ping-pongs on one connection.
    Rr {
        target: SocketAddr,
        #[arg(long, value_parser = seconds)]
        seconds: Duration,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Small UDP datagrams as fast as sendmmsg(2) goes, over a few flows.
    UdpBlast {
        target: SocketAddr,
        #[arg(long, value_parser = seconds)]
        seconds: Duration,
        /// UDP payload bytes (16 makes a 58-byte frame).
        #[arg(long, default_value_t = 16)]
        size: usize,
        /// Source sockets, each its own 5-tuple (its own conntrack entry).
        #[arg(long, default_value_t = 4)]
        flows: usize,
    },
    /// Counts UDP datagrams from the first one until none came for
    /// --idle-ms, then prints the count and the rate.
    UdpSink {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 300)]
        idle_ms: u64,
    },
    /// DNS A queries per second and their latency, over UDP, cycling
    /// through NAMES with --in-flight queries outstanding at all times.
    Dns {
        server: SocketAddr,
        #[arg(long, value_parser = seconds)]
        seconds: Duration,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Threads, each with its own socket and share of the window.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// After a line on stdin, the milliseconds until NAME resolves to the
    /// SERVICE's address at --dns and until SERVICE accepts a connection.
    Propagation {
        name: String,
        service: SocketAddrV4,
        #[arg(long)]
        dns: Option<SocketAddr>,
        #[arg(long, value_parser = seconds, default_value = "10")]
        timeout: Duration,
    },
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

fn main() -> Result<()> {
    let report = match Cli::parse().command {
        Mode::Serve { crr, rr } => return serve::run(crr, rr),
        Mode::Crr { target, seconds } => crr::run(target, seconds)?,
        Mode::Rr {
            target,
            seconds,
            size,
        } => rr::run(target, seconds, size)?,
        Mode::UdpBlast {
            target,
            seconds,
            size,
            flows,
        } => udp_blast::run(target, seconds, size, flows)?,
        Mode::UdpSink { port, idle_ms } => udp_sink::run(port, Duration::from_millis(idle_ms))?,
        Mode::Dns {
            server,
            seconds,
            in_flight,
            threads,
            names,
        } => dns::run(server, &names, seconds, in_flight, threads)?,
        Mode::Propagation {
            name,
            service,
            dns,
            timeout,
        } => propagation::run(dns, &name, service, timeout)?,
    };
    println!("{report}");
    Ok(())
}
