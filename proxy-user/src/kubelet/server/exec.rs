//! `GET /exec/<namespace>/<pod>/<container>?command=..&stdin=..&stdout=..&stderr=..&tty=..`:
//! runs a command in a container over a WebSocket (see `channels`), as
//! `kubectl exec` and `kubectl cp` ask the API server for it; `/attach/...`
//! relays what the container writes from then on (`kubectl attach`).
//! Everything after the upgrade, a container that is not running included,
//! is told on the error channel, as the kubelet does.
use std::{os::fd::OwnedFd, process::Stdio};

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::{Request, Response, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    process::{Child, ChildStdin},
    sync::mpsc,
    task::JoinSet,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::derive_accept_key,
        protocol::{CloseFrame, Role, frame::coding::CloseCode},
    },
};
use tracing::debug;

use super::{
    Body,
    channels::{self, Incoming, Outcome, STDERR, STDOUT},
    terminal,
};

/// What the client asked for.
#[derive(Debug, Default, PartialEq)]
pub struct ExecQuery {
    pub argv: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Reads PodExecOptions' names (`stdin`, as kubectl sends them and the
/// API server passes them on) and the kubelet's own (`input`).
pub fn parse_query(query: Option<&str>) -> ExecQuery {
    let mut parsed = ExecQuery::default();
    let flag = |value: &str| value == "true" || value == "1";
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "command" => parsed.argv.push(value.into_owned()),
            "stdin" | "input" => parsed.stdin = flag(&value),
            "stdout" | "output" => parsed.stdout = flag(&value),
            "stderr" | "error" => parsed.stderr = flag(&value),
            "tty" => parsed.tty = flag(&value),
            _ => {}
        }
    }
    parsed
}

/// What a session streams; each is `Err` with the reason it cannot.
pub enum Source {
    /// A command to run (exec).
    Command(Result<tokio::process::Command, String>),
    /// A running container's output (attach).
    Output(Result<mpsc::Receiver<Bytes>, String>),
}

/// Answers the upgrade and runs the session on the upgraded connection.
pub fn upgrade(
    mut request: Request<hyper::body::Incoming>,
    query: ExecQuery,
    source: Source,
) -> Response<Body> {
    let headers = request.headers();
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(channels::choose);
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(protocol), Some(key)) = (wants_websocket, protocol, key) else {
        return super::text(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade with subprotocol v5.channel.k8s.io or v4.channel.k8s.io\n"
                .into(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => {
                let socket = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(socket, Role::Server, None).await;
                session(ws, query, source).await;
            }
            Err(error) => debug!(%error, "exec upgrade failed"),
        }
    });
    super::websocket_accepted(protocol, &accept)
}

async fn session<S>(ws: WebSocketStream<S>, query: ExecQuery, source: Source)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // A normal closure: kubectl takes one without a code for an error.
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(normal))).await;
        let _ = sink.close().await;
    });
    let outcome = match source {
        Source::Command(Ok(command)) => run(command, &query, &mut incoming, &out).await,
        Source::Output(Ok(output)) => relay(output, &mut incoming, &out).await,
        Source::Command(Err(message)) | Source::Output(Err(message)) => Outcome::Failed(message),
    };
    debug!(argv = ?query.argv, ?outcome, "session ended");
    let _ = out.send(channels::status(&outcome)).await;
    drop(out);
    let _ = writer.await;
}

/// Runs the command, pumping its stdio through the socket, until it ends
/// and its output is sent.
async fn run<R>(
    mut command: tokio::process::Command,
    query: &ExecQuery,
    incoming: &mut R,
    out: &mpsc::Sender<Message>,
) -> Outcome
where
    R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut pumps = JoinSet::new();
    let mut terminal: Option<OwnedFd> = None;
    let spawned = if query.tty {
        spawn_on_terminal(command).and_then(|(child, master)| {
            let reader = tokio::fs::File::from_std(master.try_clone()?.into());
            pumps.spawn(pump(reader, STDOUT, out.clone()));
            terminal = Some(master);
            Ok(child)
        })
    } else {
        let piped = |wanted| {
            if wanted {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        command
            .stdin(piped(query.stdin))
            .stdout(piped(query.stdout))
            .stderr(piped(query.stderr))
            .spawn()
    };
    let mut child: Child = match spawned {
        Ok(child) => child,
        Err(error) => {
            return Outcome::Failed(format!(
                "running {:?} in the container: {error}",
                query.argv
            ));
        }
    };
    if let Some(stdout) = child.stdout.take() {
        pumps.spawn(pump(stdout, STDOUT, out.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.spawn(pump(stderr, STDERR, out.clone()));
    }
    let mut stdin = Input::new(child.stdin.take(), terminal.as_ref());
    let mut client_open = true;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status,
            message = incoming.next(), if client_open => match message {
                Some(Ok(Message::Binary(data))) => stdin.take(channels::incoming(&data)).await,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    // The client left: nobody reads what the command says.
                    // runc passes SIGTERM on to the command (SIGKILL
                    // would end runc alone).
                    client_open = false;
                    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    };
    drop(stdin);
    while pumps.join_next().await.is_some() {}
    match exit {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt as _;
            Outcome::Exited(
                status
                    .code()
                    .or_else(|| status.signal().map(|signal| 128 + signal))
                    .unwrap_or(255),
            )
        }
        Err(error) => Outcome::Failed(format!("waiting for {:?}: {error}", query.argv)),
    }
}

/// Sends the container's output on stdout until it ends or the client
/// leaves.
async fn relay<R>(
    mut output: mpsc::Receiver<Bytes>,
    incoming: &mut R,
    out: &mpsc::Sender<Message>,
) -> Outcome
where
    R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(chunk) => {
                    if out.send(channels::frame(STDOUT, &chunk)).await.is_err() {
                        return Outcome::Exited(0);
                    }
                }
                None => return Outcome::Exited(0),
            },
            message = incoming.next() => {
                if matches!(message, None | Some(Ok(Message::Close(_)) | Err(_))) {
                    return Outcome::Exited(0);
                }
            }
        }
    }
}

/// Starts `command` on a new terminal; returns the terminal's near side.
/// The command is dropped on return: it held the far side, which must
/// close here, or reading the near side would never end.
fn spawn_on_terminal(mut command: tokio::process::Command) -> std::io::Result<(Child, OwnedFd)> {
    let master = terminal::Terminal::open()?.attach(&mut command)?;
    Ok((command.spawn()?, master))
}

/// Where the client's input goes: the command's stdin pipe or its
/// terminal.
struct Input<'a> {
    pipe: Option<ChildStdin>,
    terminal: Option<(&'a OwnedFd, tokio::fs::File)>,
}

impl<'a> Input<'a> {
    fn new(pipe: Option<ChildStdin>, terminal: Option<&'a OwnedFd>) -> Input<'a> {
        let terminal = terminal.and_then(|master| {
            let writer = master.try_clone().ok()?;
            Some((master, tokio::fs::File::from_std(writer.into())))
        });
        Input { pipe, terminal }
    }

    async fn take(&mut self, message: Incoming) {
        match message {
            Incoming::Stdin(data) => {
                let written = match (&mut self.pipe, &mut self.terminal) {
                    (Some(pipe), _) => pipe.write_all(&data).await,
                    (None, Some((_, writer))) => match writer.write_all(&data).await {
                        Ok(()) => writer.flush().await,
                        Err(error) => Err(error),
                    },
                    (None, None) => Ok(()),
                };
                if written.is_err() {
                    self.pipe = None;
                }
            }
            Incoming::CloseStdin => self.pipe = None,
            Incoming::Resize { width, height } => {
                if let Some((master, _)) = &self.terminal
                    && let Err(error) = terminal::resize(master, width, height)
                {
                    debug!(%error, "resizing the terminal failed");
                }
            }
            Incoming::Ignored => {}
        }
    }
}

/// Sends what `reader` gives on `channel` until its end.
async fn pump(mut reader: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Message>) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if out
                    .send(channels::frame(channel, &buffer[..read]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_as_kubectl_sends_it() {
        let query = parse_query(Some(
            "command=sh&command=-c&command=echo+a%20b%26&stdin=true&stdout=true&tty=false",
        ));
        assert_eq!(
            query,
            ExecQuery {
                argv: vec!["sh".into(), "-c".into(), "echo a b&".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: false,
            }
        );
    }
}
