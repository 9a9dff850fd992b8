//! Response bodies: a whole JSON document, or a watch's stream of lines.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

use super::limits::Admission;

/// A response body.
pub enum Body {
    Full(Option<Bytes>),
    /// Chunks until the sending task drops its sender; dropping the body
    /// (client gone) ends the task's sends.
    Stream(mpsc::Receiver<Bytes>),
    /// A long-running request's body, holding its place among the
    /// requests in flight until the client has it all or leaves.
    Holding {
        body: Box<Body>,
        _admission: Admission,
    },
}

impl Body {
    /// This body, holding `admission` as long as it lives.
    pub fn holding(self, admission: Admission) -> Self {
        Body::Holding {
            body: Box::new(self),
            _admission: admission,
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Body::Holding { body, .. } => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(_) => false,
            Body::Holding { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
            Body::Holding { body, .. } => body.size_hint(),
        }
    }
}
