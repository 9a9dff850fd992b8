//! SPDY/3 frames, as kubectl's port-forward sends them: 8 bytes of head,
//! then the payload. A control frame's head holds the version (3), its
//! type, flags and length; a data frame's the stream it belongs to, flags
//! and length. Only the frames a port-forward server acts on are read
//! apart; the rest (SETTINGS, WINDOW_UPDATE, HEADERS) come back as
//! `Other`, since the client sends no flow control this server keeps.
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The client opens a stream; `headers` is its compressed header block.
    SynStream {
        stream: u32,
        headers: Bytes,
    },
    RstStream {
        stream: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading a SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} is not served, only {VERSION}")]
    Version(u16),
    #[error("a SPDY control frame of type {kind} is too short ({length} bytes)")]
    Short { kind: u16, length: usize },
}

/// The next frame, or `None` where the connection ends between frames.
pub async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    parse(head, Bytes::from(payload)).map(Some)
}

fn parse(head: [u8; 8], mut payload: Bytes) -> Result<Frame, FrameError> {
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    if first & CONTROL_BIT == 0 {
        return Ok(Frame::Data {
            stream: first & STREAM_ID_MASK,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        });
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = (first & 0xffff) as u16;
    let least = match kind {
        SYN_STREAM => 10,
        RST_STREAM | GOAWAY => 8,
        PING => 4,
        _ => 0,
    };
    if payload.len() < least {
        return Err(FrameError::Short {
            kind,
            length: payload.len(),
        });
    }
    Ok(match kind {
        SYN_STREAM => {
            let stream = payload.get_u32() & STREAM_ID_MASK;
            // The associated stream, the priority and the slot.
            payload.advance(6);
            Frame::SynStream {
                stream,
                headers: payload,
            }
        }
        RST_STREAM => Frame::RstStream {
            stream: payload.get_u32() & STREAM_ID_MASK,
        },
        PING => Frame::Ping {
            id: payload.get_u32(),
        },
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    })
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + payload.len());
    frame.put_u32(CONTROL_BIT | (u32::from(VERSION) << 16) | u32::from(kind));
    frame.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    frame.put_slice(payload);
    frame.freeze()
}

/// The answer to a client's SYN_STREAM, with a compressed header block.
pub fn syn_reply(stream: u32, headers: &[u8]) -> Bytes {
    let mut payload = BytesMut::with_capacity(4 + headers.len());
    payload.put_u32(stream & STREAM_ID_MASK);
    payload.put_slice(headers);
    control(SYN_REPLY, 0, &payload)
}

pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes())
}

/// A data frame; `data` fits its 24-bit length (under 16 MiB).
pub fn data(stream: u32, fin: bool, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + data.len());
    frame.put_u32(stream & STREAM_ID_MASK);
    let flags = if fin { FLAG_FIN } else { 0 };
    frame.put_u32((u32::from(flags) << 24) | data.len() as u32);
    frame.put_slice(data);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = read(&mut bytes).await.unwrap() {
            frames.push(frame);
        }
        frames
    }

    #[tokio::test]
    async fn written_frames_read_back() {
        let mut wire = data(5, true, b"hello").to_vec();
        wire.extend_from_slice(&ping(7));
        wire.extend_from_slice(&data(3, false, b""));
        assert_eq!(
            read_all(&wire).await,
            [
                Frame::Data {
                    stream: 5,
                    fin: true,
                    data: Bytes::from_static(b"hello")
                },
                Frame::Ping { id: 7 },
                Frame::Data {
                    stream: 3,
                    fin: false,
                    data: Bytes::new()
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_syn_stream_gives_its_stream_and_header_block() {
        let payload = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb];
        let wire = control(SYN_STREAM, 0, &payload);
        assert_eq!(
            read_all(&wire).await,
            [Frame::SynStream {
                stream: 1,
                headers: Bytes::from_static(&[0xaa, 0xbb])
            }]
        );
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        let mut wire = control(PING, 0, &[1, 2]).to_vec();
        assert!(matches!(
            read(&mut &wire[..]).await,
            Err(FrameError::Short { kind: PING, .. })
        ));
        wire = control(PING, 0, &[0, 0, 0, 1]).to_vec();
        wire[1] = 2;
        assert!(matches!(
            read(&mut &wire[..]).await,
            Err(FrameError::Version(2))
        ));
        let cut = &data(1, false, b"hello")[..10];
        assert!(read(&mut &cut[..]).await.is_err());
    }
}
