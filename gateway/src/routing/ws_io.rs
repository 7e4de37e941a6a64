//! The byte stream under one client WebSocket, watched frame by frame as it is read, so the
//! socket can put its WebSocket state down while idle and pick it up again without losing a
//! byte.
//!
//! An idle client socket should cost the gateway almost nothing: no read buffer, no write
//! buffer, no codec state. The codec (tungstenite) reads ahead into its own buffer, so it can
//! only be dropped when that buffer holds nothing: when every byte read so far belongs to a
//! complete frame and no message is half received (a fragmented message keeps state between
//! frames). [`FrameTracker`] follows the frame headers in the bytes the codec reads and says
//! exactly that; [`TrackedIo`] feeds it. While parked, the socket reads nothing until the
//! client sends; the first bytes read then go to a new codec as already read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the byte stream stands, frame by frame.
#[derive(Debug, Clone, Default)]
pub struct FrameTracker {
    /// Header bytes of the frame being read (at most 14: 2, 8 of length, 4 of mask).
    header: [u8; 14],
    /// How many of them are in.
    have: u8,
    /// A data frame without FIN was the last one: the message continues in later frames.
    message_open: bool,
    /// Payload bytes of the current frame still to come; 0 while in a header.
    payload_left: u64,
}

impl FrameTracker {
    /// Takes bytes as they are read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.payload_left {
                left @ 1.. => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    self.payload_left = left - n as u64;
                }
                0 => {
                    self.header[usize::from(self.have)] = bytes[0];
                    self.have += 1;
                    bytes = &bytes[1..];
                    if let Some(payload) = self.header_done() {
                        let b0 = self.header[0];
                        let opcode = b0 & 0x0F;
                        // Data (1, 2) and continuation (0) frames carry messages; control
                        // frames (8..=10) come between fragments without ending them.
                        if opcode < 8 {
                            self.message_open = b0 & 0x80 == 0;
                        }
                        self.have = 0;
                        self.payload_left = payload;
                    }
                }
            }
        }
    }

    /// The payload length once the header is complete.
    fn header_done(&self) -> Option<u64> {
        let have = usize::from(self.have);
        if have < 2 {
            return None;
        }
        let b1 = self.header[1];
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        let (ext, len) = match b1 & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if have < 2 + ext + mask {
            return None;
        }
        Some(len.unwrap_or_else(|| {
            self.header[2..2 + ext]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }))
    }

    /// Every byte read so far belongs to a complete frame, and no message is half received:
    /// a codec that has taken all complete frames holds nothing.
    pub fn at_rest(&self) -> bool {
        self.have == 0 && self.payload_left == 0 && !self.message_open
    }
}

/// An IO that shows the bytes read through it to a [`FrameTracker`].
pub struct TrackedIo<T> {
    inner: T,
    tracker: FrameTracker,
}

impl<T> TrackedIo<T> {
    /// Wraps `inner`; `tracker` already saw what was read before.
    pub fn new(inner: T, tracker: FrameTracker) -> Self {
        Self { inner, tracker }
    }

    /// Whether the stream is between messages (see [`FrameTracker::at_rest`]).
    pub fn at_rest(&self) -> bool {
        self.tracker.at_rest()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.tracker.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN flag, opcode, masked payload of `len` bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=65_535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn whole_frames_leave_it_at_rest_whatever_the_read_sizes() {
        let mut bytes = frame(true, 1, 5);
        bytes.extend(frame(true, 2, 300));
        bytes.extend(frame(true, 2, 70_000));
        bytes.extend(frame(true, 9, 0)); // a ping
        for chunk in [1, 2, 3, 7, 13, 4096, bytes.len()] {
            let mut t = FrameTracker::default();
            let mut rest_points = 0;
            for piece in bytes.chunks(chunk) {
                t.feed(piece);
                rest_points += usize::from(t.at_rest());
            }
            assert!(t.at_rest(), "chunk {chunk}");
            assert!(rest_points >= 1);
        }
    }

    #[test]
    fn a_partial_frame_or_an_open_message_is_not_at_rest() {
        let mut t = FrameTracker::default();
        let f = frame(true, 1, 10);
        t.feed(&f[..1]);
        assert!(!t.at_rest(), "half a header");
        t.feed(&f[1..8]);
        assert!(!t.at_rest(), "payload to come");
        t.feed(&f[8..]);
        assert!(t.at_rest());

        // A message in two fragments, with a ping between them.
        t.feed(&frame(false, 1, 3));
        assert!(!t.at_rest(), "first fragment");
        t.feed(&frame(true, 9, 2));
        assert!(!t.at_rest(), "a control frame does not end the message");
        t.feed(&frame(true, 0, 3));
        assert!(t.at_rest(), "last fragment");
    }
}
