//! `https://` gateways are reached over TLS (`wss://`): a TLS handshake is attempted, so an
//! endpoint that does not speak TLS fails as a connection error, not as "TLS unsupported".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rivulet_lambda_runner::envoy::{
    ActorStart, EnvoyClient, EnvoyConfig, EnvoyError, EnvoyHandler,
};
use rivulet_wire::envoy::{StopActorReason, ToEnvoyTunnelMessage};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

struct Nothing;

#[async_trait]
impl EnvoyHandler for Nothing {
    async fn start_actor(&self, _client: EnvoyClient, _start: ActorStart) {}
    async fn stop_actor(&self, _c: EnvoyClient, _a: String, _g: u32, _r: StopActorReason) {}
    async fn tunnel(&self, _client: EnvoyClient, _msg: ToEnvoyTunnelMessage) {}
}

#[tokio::test]
async fn an_https_endpoint_gets_a_tls_handshake() {
    // A server that reads what the client sends first, then hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 16];
        let n = sock.read(&mut buf).await.unwrap_or(0);
        let _ = first_tx.send(buf[..n].to_vec());
    });
    let mut config = EnvoyConfig::new(format!("https://{addr}"));
    config.connect_timeout = Duration::from_secs(1);
    let Err(err) = EnvoyClient::connect(config, Arc::new(Nothing), CancellationToken::new()).await
    else {
        panic!("connected although no TLS server is there");
    };
    assert!(
        !matches!(err, EnvoyError::Config(_)),
        "TLS must be supported: {err}"
    );
    let first = first_rx.await.unwrap();
    // 0x16 = a TLS handshake record: the client spoke TLS, not plain HTTP.
    assert_eq!(first.first(), Some(&0x16), "first bytes: {first:?}");
}
