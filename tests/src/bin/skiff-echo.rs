//! skiff-echo: a tiny TCP/UDP backend that answers with its name, and a client
//! that reports, as JSON lines, which backend answered and from which address.
//! End-to-end tests run servers in pods and clients anywhere in the cluster.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_tests::{CallResult, FailureKind};

#[derive(Parser)]
#[command(
    version,
    about = "Echo backend and client for skiff's end-to-end tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Answer every TCP connection and UDP datagram with this server's name.
    ///
    /// TCP: an HTTP GET/HEAD/POST gets `HTTP/1.0 200 OK` with body `<name>\n`
    /// and the connection is closed; anything else gets `<name>\n` per chunk
    /// received, until EOF. UDP: each datagram gets `<name>` back. Prints
    /// `ready` once all ports are bound.
    Serve {
        #[arg(long)]
        name: String,
        /// TCP port to listen on (0.0.0.0); repeatable.
        #[arg(long = "tcp", value_name = "PORT")]
        tcp: Vec<u16>,
        /// UDP port to listen on (0.0.0.0); repeatable.
        #[arg(long = "udp", value_name = "PORT")]
        udp: Vec<u16>,
        /// WebSocket port to listen on (0.0.0.0); repeatable. Each text
        /// message gets `<name>: <message>` back.
        #[arg(long = "websocket", value_name = "PORT")]
        websocket: Vec<u16>,
    },
    /// Open a WebSocket to ADDR:PORT with `Host: <host>`, send each
    /// message and print each answer on a line of its own.
    Websocket {
        target: SocketAddr,
        #[arg(long)]
        host: String,
        #[arg(long = "message", required = true)]
        messages: Vec<String>,
    },
    /// Resolve NAME as a program linked to the C library does (getaddrinfo,
    /// so resolv.conf's search list and ndots apply) and print each address
    /// on a line of its own; fails when nothing resolves.
    Resolve { name: String },
    /// Call a server and print one JSON object per attempt; exits 0 even
    /// when attempts fail.
    Call {
        protocol: Protocol,
        /// ADDR:PORT to call.
        target: SocketAddr,
        /// Number of attempts (ignored with --duration-ms).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Per-attempt timeout for connect and for the reply.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Pause between attempts.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Keep making attempts until this much time has passed.
        #[arg(long)]
        duration_ms: Option<u64>,
        /// UDP only: connect(2) the socket and report its peer_addr().
        #[arg(long)]
        connected: bool,
        /// UDP only: send from this source port (the same 5-tuple on every
        /// attempt).
        #[arg(long)]
        source_port: Option<u16>,
        /// UDP only: ask the server which source address it saw; the reply
        /// is `<name> <address:port>`.
        #[arg(long)]
        ask_source: bool,
        /// With --connected: one socket for every attempt, as a long-lived
        /// client keeps it. It is connected again only after the kernel
        /// aborted it (ECONNABORTED, or EDESTADDRREQ once disconnected);
        /// timeouts and ICMP errors leave it as it is.
        #[arg(long, requires = "connected")]
        keep_socket: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    Tcp,
    Udp,
}

/// Ends the process as SIGTERM's default action would (status 128 + 15).
extern "C" fn exit_on_sigterm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + libc::SIGTERM) };
}

fn main() -> Result<()> {
    // A container's pid 1 gets no signal it has no handler for, so the
    // server handles SIGTERM itself to stop when its pod stops.
    // SAFETY: the handler only calls _exit.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            exit_on_sigterm as *const () as libc::sighandler_t,
        )
    };
    match Cli::parse().command {
        Mode::Serve {
            name,
            tcp,
            udp,
            websocket,
        } => serve(&name, &tcp, &udp, &websocket),
        Mode::Websocket {
            target,
            host,
            messages,
        } => websocket_call(target, &host, &messages),
        Mode::Resolve { name } => resolve(&name),
        Mode::Call {
            protocol,
            target,
            count,
            timeout_ms,
            interval_ms,
            duration_ms,
            connected,
            source_port,
            ask_source,
            keep_socket,
        } => {
            if (connected || source_port.is_some() || ask_source)
                && matches!(protocol, Protocol::Tcp)
            {
                anyhow::bail!("--connected, --source-port and --ask-source apply to udp only");
            }
            let timeout = Duration::from_millis(timeout_ms);
            let udp = UdpCall {
                connected,
                source_port: source_port.unwrap_or(0),
                request: if ask_source { SOURCE_QUERY } else { b"hi\n" },
            };
            let mut kept = match keep_socket {
                true => Some(KeptUdp::open(target, timeout).context("opening the kept socket")?),
                false => None,
            };
            let mut attempt = || match (protocol, kept.as_mut()) {
                (Protocol::Tcp, _) => call_tcp(target, timeout),
                (Protocol::Udp, Some(kept)) => kept.call(),
                (Protocol::Udp, None) => call_udp(target, timeout, &udp),
            };
            let start = Instant::now();
            let mut done = 0;
            loop {
                let line = serde_json::to_string(&attempt())?;
                let mut out = io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
                done += 1;
                let more = match duration_ms {
                    Some(ms) => start.elapsed() < Duration::from_millis(ms),
                    None => done < count,
                };
                if !more {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(interval_ms));
            }
        }
    }
}

fn serve(name: &str, tcp: &[u16], udp: &[u16], websocket: &[u16]) -> Result<()> {
    anyhow::ensure!(
        !tcp.is_empty() || !udp.is_empty() || !websocket.is_empty(),
        "give at least one --tcp, --udp or --websocket port"
    );
    let mut workers = Vec::new();
    // Bind everything first, so `ready` means every port answers.
    for &port in tcp {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .with_context(|| format!("bind tcp {port}"))?;
        let name = name.to_owned();
        workers.push(thread::spawn(move || serve_tcp(listener, &name)));
    }
    for &port in websocket {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .with_context(|| format!("bind websocket {port}"))?;
        let name = name.to_owned();
        workers.push(thread::spawn(move || serve_websocket(listener, &name)));
    }
    for &port in udp {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
            .with_context(|| format!("bind udp {port}"))?;
        let name = name.to_owned();
        workers.push(thread::spawn(move || serve_udp(socket, &name)));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
}

fn serve_tcp(listener: TcpListener, name: &str) -> Result<()> {
    for conn in listener.incoming() {
        // A client that resets before accept completes is its own problem.
        let Ok(conn) = conn else { continue };
        let name = name.to_owned();
        thread::spawn(move || {
            // Errors here are the client going away mid-conversation.
            let _ = answer_tcp(conn, &name);
        });
    }
    Ok(())
}

fn answer_tcp(mut conn: TcpStream, name: &str) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf)?;
    if n == 0 {
        return Ok(());
    }
    let request = &buf[..n];
    let body = format!("{name}\n");
    if [&b"GET "[..], b"HEAD ", b"POST "]
        .iter()
        .any(|m| request.starts_with(m))
    {
        let head = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        if !request.starts_with(b"HEAD ") {
            conn.write_all(body.as_bytes())?;
        }
        return Ok(());
    }
    loop {
        conn.write_all(body.as_bytes())?;
        if conn.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
}

fn serve_websocket(listener: TcpListener, name: &str) -> Result<()> {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let name = name.to_owned();
        thread::spawn(move || {
            let Ok(mut socket) = tungstenite::accept(conn) else {
                return;
            };
            // Ends when the client closes or goes away.
            while let Ok(message) = socket.read() {
                if let tungstenite::Message::Text(text) = message {
                    let reply = format!("{name}: {}", text.as_str());
                    if socket.send(tungstenite::Message::text(reply)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    Ok(())
}

fn resolve(name: &str) -> Result<()> {
    use std::net::ToSocketAddrs as _;
    let addresses: std::collections::BTreeSet<_> = (name, 0)
        .to_socket_addrs()
        .with_context(|| format!("resolving {name}"))?
        .map(|address| address.ip())
        .collect();
    for address in addresses {
        println!("{address}");
    }
    Ok(())
}

fn websocket_call(target: SocketAddr, host: &str, messages: &[String]) -> Result<()> {
    use tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{host}/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("host", host.parse().context("the host header")?);
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let (mut socket, _) =
        tungstenite::client(request, stream).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    let mut out = io::stdout().lock();
    for message in messages {
        socket.send(tungstenite::Message::text(message.as_str()))?;
        let reply = socket.read()?;
        writeln!(out, "{}", reply.to_text()?)?;
    }
    socket.close(None)?;
    Ok(())
}

/// A UDP request asking the server for the source address it saw.
const SOURCE_QUERY: &[u8] = b"source?\n";

fn serve_udp(socket: UdpSocket, name: &str) -> Result<()> {
    let mut buf = [0u8; 65536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).context("udp recv_from")?;
        let reply = match &buf[..n] {
            SOURCE_QUERY => format!("{name} {from}"),
            _ => name.to_owned(),
        };
        // A client gone before the reply only loses its reply.
        let _ = socket.send_to(reply.as_bytes(), from);
    }
}

/// Runs one attempt and turns any I/O error into a `Failed` result.
fn timed(f: impl FnOnce() -> io::Result<(String, SocketAddr)>) -> CallResult {
    let start = Instant::now();
    let result = f();
    let elapsed_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok((backend, peer)) => CallResult::Ok {
            backend,
            peer,
            elapsed_ms,
        },
        Err(e) => CallResult::Failed {
            kind: FailureKind::of(&e),
            error: e.to_string(),
            elapsed_ms,
        },
    }
}

fn call_tcp(target: SocketAddr, timeout: Duration) -> CallResult {
    timed(|| {
        let mut conn = TcpStream::connect_timeout(&target, timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        // getpeername(2): through a service the socket hooks must show the VIP.
        let peer = conn.peer_addr()?;
        conn.write_all(b"hi\n")?;
        let reply = read_line(&mut conn)?;
        Ok((reply, peer))
    })
}

/// Reads up to the first newline; the server answers with exactly one line.
fn read_line(conn: &mut TcpStream) -> io::Result<String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !reply.contains(&b'\n') {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a full reply",
            ));
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let line = reply.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// How a UDP attempt is made.
struct UdpCall {
    connected: bool,
    /// 0 lets the kernel choose.
    source_port: u16,
    request: &'static [u8],
}

fn call_udp(target: SocketAddr, timeout: Duration, how: &UdpCall) -> CallResult {
    timed(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, how.source_port))?;
        socket.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 65536];
        if how.connected {
            socket.connect(target)?;
            socket.send(how.request)?;
            let n = socket.recv(&mut buf)?;
            Ok((
                String::from_utf8_lossy(&buf[..n]).into_owned(),
                socket.peer_addr()?,
            ))
        } else {
            socket.send_to(how.request, target)?;
            let (n, from) = socket.recv_from(&mut buf)?;
            Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
        }
    })
}

/// A connected UDP socket kept for every attempt (`--keep-socket`).
struct KeptUdp {
    socket: UdpSocket,
    target: SocketAddr,
    /// The kernel aborted the socket: connect it again before the next
    /// attempt, which the socket hooks then send to a live backend.
    reconnect: bool,
}

impl KeptUdp {
    fn open(target: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(timeout))?;
        socket.connect(target)?;
        Ok(Self {
            socket,
            target,
            reconnect: false,
        })
    }

    fn call(&mut self) -> CallResult {
        timed(|| {
            if self.reconnect {
                self.socket.connect(self.target)?;
                self.reconnect = false;
            }
            let result = self.exchange();
            if let Err(error) = &result {
                self.reconnect = error.kind() == io::ErrorKind::ConnectionAborted
                    || error.raw_os_error() == Some(libc::EDESTADDRREQ);
            }
            result
        })
    }

    fn exchange(&self) -> io::Result<(String, SocketAddr)> {
        let mut buf = [0u8; 65536];
        self.socket.send(b"hi\n")?;
        let n = self.socket.recv(&mut buf)?;
        Ok((
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            self.socket.peer_addr()?,
        ))
    }
}
