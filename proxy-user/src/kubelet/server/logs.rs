//! `GET /containerLogs/<namespace>/<pod>/<container>`, which the API
//! server proxies `kubectl logs` to. Query: `tailLines`, `previous=true`, and
//! `follow=true`, which streams what the container writes until its log
//! goes away (the pod is deleted) or the client leaves.
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Frame},
};
use tokio::sync::mpsc;

use super::{Body, plain, text};
use crate::kubelet::pods::{Logs, logs::tail, pod_key::PodKey};

const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Default, PartialEq)]
struct Query {
    follow: bool,
    previous: bool,
    tail_lines: Option<usize>,
}

fn parse_query(query: Option<&str>) -> Query {
    let mut parsed = Query::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "follow" => parsed.follow = value == "true" || value == "1",
            "previous" => parsed.previous = value == "true" || value == "1",
            "tailLines" => parsed.tail_lines = value.parse().ok(),
            _ => {}
        }
    }
    parsed
}

pub fn respond<B>(
    request: &Request<B>,
    logs: &Logs,
    pod: &PodKey,
    container: &str,
) -> Response<Body> {
    let PodKey { namespace, name } = pod;
    let query = parse_query(request.uri().query());
    let file = logs.path(namespace, name, container, query.previous);
    let content = match std::fs::read(&file) {
        Ok(content) => content,
        Err(_) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no logs of container {container} in pod {pod}\n"),
            );
        }
    };
    let start = tail(&content, query.tail_lines).to_vec();
    if !query.follow {
        return plain(Full::new(Bytes::from(start)).boxed());
    }
    let (tx, rx) = mpsc::channel(16);
    let offset = content.len() as u64;
    tokio::spawn(follow(logs.clone(), file, offset, start, tx));
    plain(ChannelBody { rx }.boxed())
}

/// What the container writes from now on, for `attach`: ends when the
/// container has ended for good.
pub fn attach(logs: &Logs, pod: &PodKey, container: &str) -> Result<mpsc::Receiver<Bytes>, String> {
    let file = logs.path(&pod.namespace, &pod.name, container, false);
    let offset = std::fs::metadata(&file)
        .map_err(|_| format!("container {container} is not running in pod {pod}"))?
        .len();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(follow(logs.clone(), file, offset, Vec::new(), tx));
    Ok(rx)
}

/// Sends `start`, then whatever is appended to `file` after `offset`, until
/// the container ended for good, the file is gone or the receiver is.
async fn follow(
    logs: Logs,
    file: std::path::PathBuf,
    mut offset: u64,
    start: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
) {
    use std::os::unix::fs::MetadataExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    if !start.is_empty() && tx.send(Bytes::from(start)).await.is_err() {
        return;
    }
    let mut inode = tokio::fs::metadata(&file).await.map_or(0, |m| m.ino());
    loop {
        // Looked at before the file: what the container wrote before it
        // finished is still sent.
        let finished = logs.is_finished(&file);
        let Ok(mut handle) = tokio::fs::File::open(&file).await else {
            return;
        };
        let Ok(meta) = handle.metadata().await else {
            return;
        };
        if meta.ino() != inode {
            // A restart began a new file.
            (inode, offset) = (meta.ino(), 0);
        }
        if meta.len() <= offset {
            if finished || tx.is_closed() {
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            continue;
        }
        let mut chunk = Vec::new();
        if handle.seek(std::io::SeekFrom::Start(offset)).await.is_err()
            || handle.read_to_end(&mut chunk).await.is_err()
        {
            return;
        }
        offset += chunk.len() as u64;
        if tx.send(Bytes::from(chunk)).await.is_err() {
            return;
        }
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_as_kubectl_sends_it() {
        assert_eq!(
            parse_query(Some("follow=true&tailLines=10&timestamps=false")),
            Query {
                follow: true,
                previous: false,
                tail_lines: Some(10)
            }
        );
        assert_eq!(parse_query(None), Query::default());
    }
}
