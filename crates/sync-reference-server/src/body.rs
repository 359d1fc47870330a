//! Response bodies: whole, or broken in the ways the fault mode needs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// How much of a padded body goes in one frame.
const CHUNK: usize = 64 * 1024;

/// The padding of [`ReplyBody::padding`], shared by every frame.
static XS: [u8; CHUNK] = [b'x'; CHUNK];

const PADDING_HEAD: &[u8] = b"{\"padding\":\"";
const PADDING_TAIL: &[u8] = b"\"}";
const PADDING_EMPTY: &[u8] = b"{\"padding\":\"\"}";

/// How long a cut body waits after its last bytes before breaking the
/// connection, so they are flushed to the socket first.
const CUT_PAUSE: Duration = Duration::from_millis(20);

/// A response body.
#[derive(Debug)]
pub(crate) struct ReplyBody(Kind);

#[derive(Debug)]
enum Kind {
    /// All at once.
    Full(Bytes),
    /// `sent`, then an error after a pause, though `declared` bytes were
    /// announced.
    Cut {
        sent: Bytes,
        declared: u64,
        pause: Option<Pin<Box<Sleep>>>,
    },
    /// `head`, `xs` bytes of padding, `tail`.
    Padding { head: Bytes, xs: usize, tail: Bytes },
    /// One byte per `interval`.
    Trickle {
        rest: Bytes,
        interval: Duration,
        wait: Option<Pin<Box<Sleep>>>,
    },
}

impl ReplyBody {
    pub(crate) fn full(body: Bytes) -> Self {
        Self(Kind::Full(body))
    }

    /// Announces the whole of `body` but sends only its first half (at
    /// least one byte of a non-empty body, never all of it), then fails.
    pub(crate) fn cut(mut body: Bytes) -> Self {
        let declared = u64::try_from(body.len().max(2)).unwrap_or(u64::MAX);
        let sent = body.split_to((body.len() / 2).max(1).min(body.len()));
        Self(Kind::Cut {
            sent,
            declared,
            pause: None,
        })
    }

    /// Exactly `bytes` bytes of `{"padding":"xxx…"}`.
    pub(crate) fn padding(bytes: usize) -> Self {
        let fixed = PADDING_HEAD.len() + PADDING_TAIL.len();
        let kind = if bytes >= fixed {
            Kind::Padding {
                head: Bytes::from_static(PADDING_HEAD),
                xs: bytes - fixed,
                tail: Bytes::from_static(PADDING_TAIL),
            }
        } else {
            Kind::Padding {
                head: Bytes::from_static(PADDING_EMPTY.get(..bytes).unwrap_or_default()),
                xs: 0,
                tail: Bytes::new(),
            }
        };
        Self(kind)
    }

    pub(crate) fn trickle(body: Bytes, interval: Duration) -> Self {
        Self(Kind::Trickle {
            rest: body,
            interval,
            wait: None,
        })
    }
}

fn len(bytes: &Bytes) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let frame = match &mut self.get_mut().0 {
            Kind::Full(body) => std::mem::take(body),
            Kind::Cut {
                sent,
                declared,
                pause,
            } => {
                if !sent.is_empty() {
                    *declared -= len(sent);
                    let frame = std::mem::take(sent);
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                let pause = pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_PAUSE)));
                ready!(pause.as_mut().poll(cx));
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "injected fault: the body is cut short",
                ))));
            }
            Kind::Padding { head, xs, tail } => {
                if !head.is_empty() {
                    std::mem::take(head)
                } else if *xs > 0 {
                    let n = (*xs).min(CHUNK);
                    *xs -= n;
                    Bytes::from_static(XS.get(..n).unwrap_or_default())
                } else {
                    std::mem::take(tail)
                }
            }
            Kind::Trickle { rest, interval, wait } => {
                if rest.is_empty() {
                    return Poll::Ready(None);
                }
                if let Some(wait) = wait {
                    ready!(wait.as_mut().poll(cx));
                }
                *wait = Some(Box::pin(tokio::time::sleep(*interval)));
                rest.split_to(1)
            }
        };
        if frame.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(Frame::data(frame))))
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(body) | Kind::Trickle { rest: body, .. } => body.is_empty(),
            Kind::Cut { .. } => false,
            Kind::Padding { head, xs, tail } => head.is_empty() && *xs == 0 && tail.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let remaining = match &self.0 {
            Kind::Full(body) | Kind::Trickle { rest: body, .. } => len(body),
            Kind::Cut { declared, .. } => *declared,
            Kind::Padding { head, xs, tail } => {
                len(head) + u64::try_from(*xs).unwrap_or(u64::MAX) + len(tail)
            }
        };
        SizeHint::with_exact(remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn collect(body: ReplyBody) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn padding_has_the_exact_length_and_is_json_when_long_enough() {
        for bytes in [0, 1, 13, 14, 15, CHUNK + 100, 3 * CHUNK] {
            let body = ReplyBody::padding(bytes);
            assert_eq!(body.size_hint().exact(), Some(bytes as u64));
            let collected = collect(body).await;
            assert_eq!(collected.len(), bytes);
            if bytes >= 14 {
                let value: serde_json::Value = serde_json::from_slice(&collected).unwrap();
                assert_eq!(value["padding"].as_str().unwrap().len(), bytes - 14);
            }
        }
    }

    #[tokio::test]
    async fn a_trickle_delivers_the_whole_body() {
        let body = ReplyBody::trickle(Bytes::from_static(b"{\"a\":1}"), Duration::from_millis(1));
        assert_eq!(collect(body).await, b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_cut_body_sends_half_then_fails() {
        let mut body = ReplyBody::cut(Bytes::from_static(b"0123456789"));
        assert_eq!(body.size_hint().exact(), Some(10));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"01234");
        assert!(body.frame().await.unwrap().is_err());
    }
}
