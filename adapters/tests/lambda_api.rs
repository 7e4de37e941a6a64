//! The Lambda adapter against a loopback stand-in for the Lambda Invoke API (the one fake
//! here: `cargo lambda watch` cannot throttle or cut a connection). The real adapter and the
//! real SDK client run; the stand-in counts what reaches it. Checked: a throttle is named
//! with the wait the service asked for, and nothing is retried: not a throttle, not a
//! connection cut mid-invocation (a retried Invoke would start a second copy of the actor),
//! not an error status.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rivulet_adapters::lambda::LambdaPlatform;
use rivulet_adapters::{ErrorKind, InvocationEvent, InvokeRequest, Platform};
use tokio_util::sync::CancellationToken;

const MODE_THROTTLE: usize = 0;
const MODE_CUT: usize = 1;
const MODE_ERROR: usize = 2;
const MODE_OK: usize = 3;

fn request() -> InvokeRequest {
    InvokeRequest {
        standby: None,
        payload: vec![8, 0, 1, 2],
        endpoint: "http://127.0.0.1:6420".into(),
        namespace: "default".into(),
        pool: "lam".into(),
        token: None,
        actor_id: "a".into(),
        generation: 1,
        lifespan: Duration::from_secs(5),
    }
}

async fn end_of(platform: &LambdaPlatform) -> InvocationEvent {
    let invocation = platform.invoke(request(), CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(30), invocation.ended())
        .await
        .expect("the invocation ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_cuts_and_errors_are_named_and_never_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mode = Arc::new(AtomicUsize::new(MODE_THROTTLE));
    let (c, m) = (calls.clone(), mode.clone());
    let app = Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        post(move |body: axum::body::Bytes| {
            let (c, m) = (c.clone(), m.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(event["poolName"], "lam");
                assert_eq!(event["payload"], "CAABAg==");
                let resp: Response = match m.load(Ordering::SeqCst) {
                    MODE_THROTTLE => (
                        StatusCode::TOO_MANY_REQUESTS,
                        // As the service sends it: the wait in `Retry-After`.
                        [
                            ("x-amzn-errortype", "TooManyRequestsException"),
                            ("retry-after", "7"),
                        ],
                        r#"{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}"#,
                    )
                        .into_response(),
                    MODE_CUT => {
                        // The function "runs", then the connection drops before any answer.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        panic!("connection cut");
                    }
                    MODE_ERROR => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("x-amzn-errortype", "ServiceException")],
                        r#"{"message":"internal"}"#,
                    )
                        .into_response(),
                    _ => (
                        StatusCode::OK,
                        r#"{"actorId":"a","generation":1,"outcome":"actor_stopped"}"#,
                    )
                        .into_response(),
                };
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    std::env::set_var("AWS_ENDPOINT_URL_LAMBDA", format!("http://{addr}"));
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let platform = LambdaPlatform::new("rivulet-runner", None, None);

    let InvocationEvent::Failed(err) = end_of(&platform).await else {
        panic!("a throttle is a failure")
    };
    assert_eq!(
        err.kind,
        ErrorKind::Throttled {
            retry_after: Some(Duration::from_secs(7))
        },
        "{err}"
    );
    assert!(
        err.message.contains("ConcurrentInvocationLimitExceeded"),
        "{err}"
    );
    assert_eq!(
        calls.swap(0, Ordering::SeqCst),
        1,
        "a throttle is not retried by the SDK"
    );

    mode.store(MODE_CUT, Ordering::SeqCst);
    let end = end_of(&platform).await;
    assert!(
        matches!(&end, InvocationEvent::Failed(e) if e.kind == ErrorKind::Unreachable),
        "{end:?}"
    );
    assert_eq!(
        calls.swap(0, Ordering::SeqCst),
        1,
        "a cut invocation is not retried: a retry would start a second copy"
    );

    mode.store(MODE_ERROR, Ordering::SeqCst);
    let end = end_of(&platform).await;
    assert!(
        matches!(&end, InvocationEvent::Failed(e) if e.kind == ErrorKind::Status(500)),
        "{end:?}"
    );
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);

    mode.store(MODE_OK, Ordering::SeqCst);
    assert_eq!(end_of(&platform).await, InvocationEvent::Finished);
}
