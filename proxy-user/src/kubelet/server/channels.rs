//! Kubernetes' channel protocol over WebSocket (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`): each binary message starts with its channel's
//! number. 0 is stdin, 1 stdout, 2 stderr, 3 the error channel (one
//! `Status` saying how the command ended, with its exit code), 4 the
//! terminal's size; v5 adds 255, by which the client closes a channel
//! (stdin at its end).
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Bytes, Message};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
const STDIN: u8 = 0;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The subprotocols served, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The best protocol the client offers (`Sec-WebSocket-Protocol`).
pub fn choose(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS
        .into_iter()
        .find(|protocol| offered.contains(protocol))
}

/// What a client's message says.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Stdin(Bytes),
    CloseStdin,
    Resize {
        width: u16,
        height: u16,
    },
    /// Anything else: an empty message, a channel the server does not read.
    Ignored,
}

pub fn incoming(message: &[u8]) -> Incoming {
    let Some((&channel, data)) = message.split_first() else {
        return Incoming::Ignored;
    };
    match channel {
        STDIN => Incoming::Stdin(Bytes::copy_from_slice(data)),
        CLOSE if data.first() == Some(&STDIN) => Incoming::CloseStdin,
        RESIZE => {
            let size: Value = serde_json::from_slice(data).unwrap_or_default();
            let dimension = |name| size[name].as_u64().and_then(|v| u16::try_from(v).ok());
            match (dimension("Width"), dimension("Height")) {
                (Some(width), Some(height)) => Incoming::Resize { width, height },
                _ => Incoming::Ignored,
            }
        }
        _ => Incoming::Ignored,
    }
}

pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    Message::binary(message)
}

/// How a command ended, as the error channel's `Status` says it: kubectl
/// exits with the code in its `ExitCode` cause.
#[derive(Debug)]
pub enum Outcome {
    Exited(i32),
    /// It could not run: the message says why.
    Failed(String),
}

pub fn status(outcome: &Outcome) -> Message {
    let status = match outcome {
        Outcome::Exited(0) => json!({ "metadata": {}, "status": "Success" }),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
        }),
        Outcome::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        }),
    };
    frame(ERROR, status.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_is_preferred_and_unknown_protocols_are_refused() {
        assert_eq!(
            choose("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
        assert_eq!(choose("channel.k8s.io, base64.channel.k8s.io"), None);
    }

    #[test]
    fn client_messages_are_read_by_channel() {
        assert_eq!(
            incoming(b"\x00hi"),
            Incoming::Stdin(Bytes::from_static(b"hi"))
        );
        assert_eq!(incoming(b"\xff\x00"), Incoming::CloseStdin);
        assert_eq!(incoming(b"\xff\x01"), Incoming::Ignored);
        assert_eq!(
            incoming(b"\x04{\"Width\":80,\"Height\":24}"),
            Incoming::Resize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(incoming(b""), Incoming::Ignored);
    }

    #[test]
    fn a_non_zero_exit_carries_its_code() {
        let Message::Binary(data) = status(&Outcome::Exited(3)) else {
            panic!("a binary message")
        };
        assert_eq!(data[0], ERROR);
        let status: Value = serde_json::from_slice(&data[1..]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(status["reason"], "NonZeroExitCode");
    }
}
