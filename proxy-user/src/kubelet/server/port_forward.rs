//! `/portForward/<namespace>/<pod>`: `kubectl port-forward` over SPDY
//! (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`),
//! or the same SPDY frames in a WebSocket's binary messages (`tunnel`).
//! For each connection it forwards, the client opens two streams with the
//! same `requestID` and `port`: `streamType: error` and `streamType: data`.
//! The data stream is joined to `127.0.0.1:<port>` in the pod's netns;
//! whatever goes wrong with it is written on the error stream as text.
//! When the pod's side ends, both streams are finished, as the kubelet
//! does, and the client takes that connection as done.
use std::collections::HashMap;

use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
    sync::mpsc,
    task::JoinSet,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{handshake::derive_accept_key, protocol::Role},
};
use tracing::debug;

use super::{
    Body,
    spdy::{
        frame::{self, Frame},
        headers::{self, HeaderReader, HeaderWriter, Headers},
    },
    tunnel,
};
use crate::kubelet::pods::{loopback::PodPorts, pod_key::PodKey};

const SPDY: &str = "SPDY/3.1";
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The WebSocket subprotocol of SPDY frames in binary messages.
const TUNNELLED: &str = "SPDY/3.1+portforward.k8s.io";
/// How much is read from the pod at a time: one data frame.
const CHUNK: usize = 32 * 1024;

/// How the client asked to carry the SPDY frames.
enum Transport {
    /// `Upgrade: SPDY/3.1`: the connection itself.
    Spdy,
    /// A WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io`
    /// (KEP-4006), which kubectl tries first; `accept` answers its key.
    WebSocket { accept: String },
}

fn transport(headers: &HeaderMap) -> Option<Transport> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if upgrade.eq_ignore_ascii_case("websocket") {
        let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
        return offered
            .split(',')
            .any(|protocol| protocol.trim() == TUNNELLED)
            .then(|| Transport::WebSocket {
                accept: derive_accept_key(key.as_bytes()),
            });
    }
    let speaks_port_forward = headers
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == PORT_FORWARD_PROTOCOL);
    (upgrade.eq_ignore_ascii_case(SPDY) && speaks_port_forward).then_some(Transport::Spdy)
}

/// Answers the upgrade and serves the connection's streams after it.
pub fn upgrade(
    mut request: Request<hyper::body::Incoming>,
    ports: PodPorts,
    pod: PodKey,
) -> Response<Body> {
    let Some(transport) = transport(request.headers()) else {
        return super::text(
            StatusCode::BAD_REQUEST,
            format!(
                "port-forward needs an upgrade to {SPDY} with {STREAM_PROTOCOL_HEADER} {PORT_FORWARD_PROTOCOL}, or to a WebSocket with subprotocol {TUNNELLED}\n"
            ),
        );
    };
    if !ports.netns(&pod).exists() {
        return super::text(
            StatusCode::NOT_FOUND,
            format!("pod {pod} does not run on this node\n"),
        );
    }
    let upgrading = hyper::upgrade::on(&mut request);
    let tunnelled = matches!(transport, Transport::WebSocket { .. });
    tokio::spawn(async move {
        let connection = match upgrading.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(error) => return debug!(%error, "port-forward upgrade failed"),
        };
        match tunnelled {
            true => {
                let ws = WebSocketStream::from_raw_socket(connection, Role::Server, None).await;
                serve(tunnel::carried_bytes(ws), ports, pod).await
            }
            false => serve(connection, ports, pod).await,
        }
    });
    match transport {
        Transport::Spdy => {
            let mut response = super::switching_protocols(SPDY);
            response.headers_mut().insert(
                STREAM_PROTOCOL_HEADER,
                HeaderValue::from_static(PORT_FORWARD_PROTOCOL),
            );
            response
        }
        Transport::WebSocket { accept } => super::websocket_accepted(TUNNELLED, &accept),
    }
}

/// What goes to the client, in order, from the connection's one writer.
enum Outgoing {
    /// Accepts a stream the client opened.
    Reply(u32),
    Data {
        stream: u32,
        data: Bytes,
        fin: bool,
    },
    Ping(u32),
}

/// The streams of one forwarded connection, as far as they have come.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Bytes>)>,
}

async fn serve<S>(connection: S, ports: PodPorts, pod: PodKey)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(connection);
    let (out, outgoing) = mpsc::channel::<Outgoing>(64);
    let writing = tokio::spawn(write(writer, outgoing));
    let mut header_reader = HeaderReader::default();
    // The client's data streams, by id: where what it sends on each goes.
    let mut inbound: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Ended with the connection: a client gone leaves no connection open
    // in the pod.
    let mut forwards = JoinSet::new();
    loop {
        let frame = match frame::read(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                debug!(%error, %pod, "port-forward connection ended");
                break;
            }
        };
        match frame {
            Frame::SynStream { stream, headers } => {
                // Every block is read, even one refused: the next ones
                // continue its zlib stream.
                let opened = header_reader.read(&headers);
                if out.send(Outgoing::Reply(stream)).await.is_err() {
                    break;
                }
                let opened = opened
                    .map_err(|error| error.to_string())
                    .and_then(|headers| Opened::from_headers(&headers));
                let opened = match opened {
                    Ok(opened) => opened,
                    Err(message) => {
                        refuse(&out, stream, message).await;
                        continue;
                    }
                };
                let pair = pairs.entry(opened.request.clone()).or_default();
                pair.port = opened.port;
                if opened.is_data {
                    let (sender, receiver) = mpsc::channel(16);
                    inbound.insert(stream, sender);
                    pair.data = Some((stream, receiver));
                } else {
                    pair.error = Some(stream);
                }
                let complete = pair.error.is_some() && pair.data.is_some();
                if let Some(Pair {
                    port,
                    error: Some(error),
                    data: Some((data, received)),
                }) = complete.then(|| pairs.remove(&opened.request)).flatten()
                {
                    let forwarding = Forwarding {
                        port,
                        error,
                        data,
                        out: out.clone(),
                    };
                    while forwards.try_join_next().is_some() {}
                    forwards.spawn(forwarding.run(ports.clone(), pod.clone(), received));
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(sender) = inbound.get(&stream)
                    && !data.is_empty()
                    && sender.send(data).await.is_err()
                {
                    inbound.remove(&stream);
                }
                if fin {
                    inbound.remove(&stream);
                }
            }
            Frame::RstStream { stream } => {
                inbound.remove(&stream);
            }
            Frame::Ping { id } => {
                if out.send(Outgoing::Ping(id)).await.is_err() {
                    break;
                }
            }
            Frame::GoAway => break,
            Frame::Other => {}
        }
    }
    forwards.abort_all();
    drop(out);
    drop(inbound);
    let _ = writing.await;
}

/// A stream the client opened, by its headers.
struct Opened {
    request: String,
    port: u16,
    is_data: bool,
}

impl Opened {
    fn from_headers(headers: &Headers) -> Result<Self, String> {
        let is_data = match headers::value(headers, "streamtype") {
            Some("data") => true,
            Some("error") => false,
            other => return Err(format!("unknown streamType {other:?}")),
        };
        let port = headers::value(headers, "port")
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0)
            .ok_or_else(|| "a port-forward stream needs a port from 1 to 65535".to_owned())?;
        let request = headers::value(headers, "requestid")
            .ok_or_else(|| "a port-forward stream needs a requestID".to_owned())?
            .to_owned();
        Ok(Self {
            request,
            port,
            is_data,
        })
    }
}

/// Tells the client why a stream is of no use, and finishes it.
async fn refuse(out: &mpsc::Sender<Outgoing>, stream: u32, message: String) {
    let _ = out
        .send(Outgoing::Data {
            stream,
            data: Bytes::from(message),
            fin: true,
        })
        .await;
}

/// One forwarded connection: its port and its two streams.
struct Forwarding {
    port: u16,
    error: u32,
    data: u32,
    out: mpsc::Sender<Outgoing>,
}

impl Forwarding {
    async fn run(self, ports: PodPorts, pod: PodKey, received: mpsc::Receiver<Bytes>) {
        let problem = match ports.connect(&pod, self.port).await {
            Ok(tcp) => {
                let (from_pod, to_pod) = tcp.into_split();
                tokio::spawn(write_to_pod(received, to_pod));
                self.send_from_pod(from_pod).await.err()
            }
            Err(error) => Some(error),
        };
        let _ = self.finish(self.data, "").await;
        let message = match problem {
            Some(error) => format!("error forwarding port {} to pod {pod}: {error}", self.port),
            None => String::new(),
        };
        let _ = self.finish(self.error, &message).await;
    }

    /// Sends what the pod writes until it stops.
    async fn send_from_pod(&self, mut from_pod: OwnedReadHalf) -> std::io::Result<()> {
        let mut buffer = vec![0; CHUNK];
        loop {
            let read = from_pod.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            let data = Outgoing::Data {
                stream: self.data,
                data: Bytes::copy_from_slice(&buffer[..read]),
                fin: false,
            };
            if self.out.send(data).await.is_err() {
                return Ok(());
            }
        }
    }

    async fn finish(&self, stream: u32, message: &str) -> Result<(), ()> {
        let data = Outgoing::Data {
            stream,
            data: Bytes::copy_from_slice(message.as_bytes()),
            fin: true,
        };
        self.out.send(data).await.map_err(drop)
    }
}

/// Writes what the client sends until it finishes its data stream, then
/// tells the pod there is no more.
async fn write_to_pod(mut received: mpsc::Receiver<Bytes>, mut to_pod: OwnedWriteHalf) {
    while let Some(data) = received.recv().await {
        if to_pod.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = to_pod.shutdown().await;
}

async fn write<W: AsyncWrite + Unpin>(mut writer: W, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut header_writer = match HeaderWriter::new() {
        Ok(header_writer) => header_writer,
        Err(error) => {
            debug!(%error, "port-forward cannot write header blocks");
            return;
        }
    };
    while let Some(message) = outgoing.recv().await {
        let bytes = match message {
            Outgoing::Reply(stream) => match header_writer.write(&[]) {
                Ok(block) => frame::syn_reply(stream, &block),
                Err(error) => {
                    debug!(%error, "port-forward reply not written");
                    return;
                }
            },
            Outgoing::Data { stream, data, fin } => frame::data(stream, fin, &data),
            Outgoing::Ping(id) => frame::ping(id),
        };
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn streams_are_known_by_their_headers() {
        let opened = Opened::from_headers(&headers(&[
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", "3"),
        ]))
        .unwrap();
        assert!(opened.is_data);
        assert_eq!((opened.port, opened.request.as_str()), (8080, "3"));
        for bad in [
            &[("streamtype", "data"), ("port", "0"), ("requestid", "1")][..],
            &[("streamtype", "data"), ("port", "http"), ("requestid", "1")],
            &[("streamtype", "stdin"), ("port", "80"), ("requestid", "1")],
            &[("streamtype", "error"), ("port", "80")],
        ] {
            assert!(Opened::from_headers(&headers(bad)).is_err(), "{bad:?}");
        }
    }
}
