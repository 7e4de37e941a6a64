//! The client's end of one WebSocket: the codec while messages flow, the bare connection
//! while the socket is idle ("parked").
//!
//! Most client sockets sit idle for most of their life, held while their actor sleeps. A
//! parked socket keeps only its connection and where the byte stream stands (`ws_io`): no
//! read or write buffer, no codec. It is picked up again when the client sends (the bytes
//! read to notice it go to the new codec as already read) or when a message for the client
//! arrives.

use std::time::Duration;

use futures_util::SinkExt;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
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

/// One client socket's connection, active or parked.
pub struct Client {
    /// Boxed: the codec is large, and a parked socket should not carry room for it.
    ws: Option<Box<ClientWs>>,
    parked: Option<ClientIo>,
    /// Bytes read while parked, for the next codec.
    part: Option<Vec<u8>>,
    /// Largest message or frame the codec reads (see [`config`]).
    max_message: usize,
    /// `rivulet_client_sockets{state="parked"}`.
    parked_gauge: prometheus::IntGauge,
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.parked.is_some() {
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
            ws: Some(Box::new(ws)),
            parked: None,
            part: None,
            max_message,
            parked_gauge,
        }
    }

    /// Whether the socket is parked.
    pub fn is_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// The codec, picking the socket up first if it is parked.
    pub async fn ws(&mut self) -> &mut ClientWs {
        if let Some(io) = self.parked.take() {
            self.parked_gauge.dec();
            let config = Some(config(self.max_message));
            let ws = match self.part.take() {
                Some(part) => {
                    WebSocketStream::from_partially_read(io, part, Role::Server, config).await
                }
                None => WebSocketStream::from_raw_socket(io, Role::Server, config).await,
            };
            self.ws = Some(Box::new(ws));
        }
        match &mut self.ws {
            Some(ws) => &mut **ws,
            None => unreachable!("a client socket is always active or parked"),
        }
    }

    /// Puts the codec down if nothing would be lost: every byte read belongs to a message
    /// already taken, and everything written is flushed. Returns whether it parked.
    pub async fn park(&mut self) -> bool {
        let Some(ws) = self.ws.as_mut() else {
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
        if let Some(ws) = self.ws.take() {
            self.parked = Some(ws.into_inner());
            self.parked_gauge.inc();
        }
        true
    }

    /// Waits, parked, for the client to send (or go); what it sent is kept for the codec
    /// that [`Client::ws`] builds. Cancel-safe: nothing is read unless it is kept.
    pub async fn wait_client(&mut self) -> Woken {
        let (Some(io), None) = (self.parked.as_mut(), &self.part) else {
            return Woken::Client;
        };
        let mut first = [0u8; WAKE_READ];
        match io.read(&mut first).await {
            Ok(0) | Err(_) => Woken::ClientGone,
            Ok(n) => {
                self.part = Some(first[..n].to_vec());
                Woken::Client
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
