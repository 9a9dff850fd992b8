//! A byte stream carried in a WebSocket's binary messages (KEP-4006's
//! tunnelling, which kubectl's port-forward tries before plain SPDY): the
//! messages' boundaries mean nothing, so the WebSocket is turned into a
//! pipe that the SPDY session reads and writes like any connection.
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

/// How much the pipe holds each way, and the most one message carries.
const BUFFER: usize = 64 * 1024;

/// The pipe end that reads what the peer sends and writes to it.
pub fn carried_bytes<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    let (mut sink, mut messages) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if to_session.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_session.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buffer = vec![0; BUFFER];
        loop {
            match from_session.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if sink
                        .send(Message::binary(buffer[..read].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    ours
}
