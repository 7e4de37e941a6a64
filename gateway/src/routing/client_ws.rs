//! The client's end of one WebSocket: the codec while messages flow, the bare connection
//! while the socket is idle ("parked").
//!
//! Most client sockets sit idle for most of their life, held while their actor sleeps. A
//! parked socket keeps only its connection and where the byte stream stands (`ws_io`): no
//! read or write buffer, no codec. It is picked up again when the client sends (the bytes
//! read to notice it go to the new codec as already read) or when a message for the client
//! arrives.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::SinkExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws_io::{FrameTracker, TrackedIo};

/// The raw connection under a client socket.
pub type ClientIo = TrackedIo<TokioIo<hyper::upgrade::Upgraded>>;
/// The codec over it.
pub type ClientWs = WebSocketStream<ClientIo>;

/// How long the codec may take to flush before the socket parks; one that cannot (a client
/// not reading) stays as it is.
const FLUSH_WITHIN: Duration = Duration::from_millis(100);

/// Bytes read at most to notice a parked socket's client: a frame header, so that a small
/// message needs no second read and nothing large is buffered here.
const WAKE_READ: usize = 16;

/// Bytes a client socket reads from the network at a time.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// The codec's settings: messages and frames up to `max_message` bytes.
fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        // A client socket mostly sits idle: tungstenite's default 128 KiB read buffer is
        // allocated and zeroed per socket up front (it was 128 of the 163 KiB each idle
        // socket cost). A larger message still grows it to the message's size while read.
        .read_buffer_size(CLIENT_READ_BUFFER)
}

/// One client socket's connection, active or parked. Every parked socket holds one, so
/// it is kept small: the codec is boxed and the connection is inline.
pub struct Client {
    conn: Conn,
    /// Bytes read while parked, for the next codec.
    part: Option<Box<[u8]>>,
    /// Largest message or frame the codec reads (see [`config`]).
    max_message: usize,
    /// `rivulet_client_sockets{state="parked"}`.
    parked_gauge: prometheus::IntGauge,
}

enum Conn {
    /// Messages flow through the codec (boxed: a parked socket carries no room for it).
    Active(Box<ClientWs>),
    /// The bare connection.
    Parked(ClientIo),
    /// Only while the connection passes from one state to the other.
    Moving,
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.is_parked() {
            self.parked_gauge.dec();
        }
    }
}

/// What woke a parked socket.
pub enum Woken {
    /// The client sent bytes (already handed to the new codec).
    Client,
    /// The client's side ended (EOF or a read error).
    ClientGone,
}

impl Client {
    /// A socket just upgraded.
    pub async fn new(
        io: hyper::upgrade::Upgraded,
        max_message: usize,
        parked_gauge: prometheus::IntGauge,
    ) -> Self {
        let io = TrackedIo::new(TokioIo::new(io), FrameTracker::default());
        let ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(config(max_message))).await;
        Self {
            conn: Conn::Active(Box::new(ws)),
            part: None,
            max_message,
            parked_gauge,
        }
    }

    /// Whether the socket is parked.
    pub fn is_parked(&self) -> bool {
        matches!(self.conn, Conn::Parked(_))
    }

    /// The codec, picking the socket up first if it is parked.
    pub async fn ws(&mut self) -> &mut ClientWs {
        if let Conn::Parked(_) = self.conn {
            let Conn::Parked(io) = std::mem::replace(&mut self.conn, Conn::Moving) else {
                unreachable!("matched above");
            };
            self.parked_gauge.dec();
            let config = Some(config(self.max_message));
            let ws = match self.part.take() {
                Some(part) => {
                    WebSocketStream::from_partially_read(io, part.into_vec(), Role::Server, config)
                        .await
                }
                None => WebSocketStream::from_raw_socket(io, Role::Server, config).await,
            };
            self.conn = Conn::Active(Box::new(ws));
        }
        match &mut self.conn {
            Conn::Active(ws) => ws,
            Conn::Parked(_) | Conn::Moving => unreachable!("a client socket is picked up above"),
        }
    }

    /// Puts the codec down if nothing would be lost: every byte read belongs to a message
    /// already taken, and everything written is flushed. Returns whether it parked.
    pub async fn park(&mut self) -> bool {
        let Conn::Active(ws) = &mut self.conn else {
            return true;
        };
        if !ws.get_ref().at_rest() {
            return false;
        }
        if !matches!(
            tokio::time::timeout(FLUSH_WITHIN, ws.flush()).await,
            Ok(Ok(()))
        ) {
            return false;
        }
        if let Conn::Active(ws) = std::mem::replace(&mut self.conn, Conn::Moving) {
            self.conn = Conn::Parked(ws.into_inner());
            self.parked_gauge.inc();
        }
        true
    }

    /// Polls, parked, for the client to send (or go); what it sent is kept for the codec
    /// that [`Client::ws`] builds. A poll by hand rather than a future: the connection keeps
    /// the task's waker itself, so waiting costs the parked socket nothing. Nothing is read
    /// unless it is kept.
    pub fn poll_client(&mut self, cx: &mut Context<'_>) -> Poll<Woken> {
        let (Conn::Parked(io), None) = (&mut self.conn, &self.part) else {
            return Poll::Ready(Woken::Client);
        };
        let mut first = [0u8; WAKE_READ];
        let mut buf = ReadBuf::new(&mut first);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Woken::ClientGone),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Woken::ClientGone),
            Poll::Ready(Ok(())) => {
                self.part = Some(buf.filled().into());
                Poll::Ready(Woken::Client)
            }
        }
    }

    /// Sends a close frame and closes, within `within`: a client that stopped reading must
    /// not keep the socket's task alive by not taking its close either.
    pub async fn close(&mut self, code: u16, reason: String, within: Duration) {
        let ws = self.ws().await;
        let _ = tokio::time::timeout(within, async {
            let _ = ws
                .close(Some(CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                }))
                .await;
        })
        .await;
    }

    /// Sends one message (flushed).
    pub async fn send(
        &mut self,
        msg: Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws().await.send(msg).await
    }
}
