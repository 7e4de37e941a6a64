//! AWS Lambda: a synchronous `Invoke` of a function running the Rust runner's Lambda entry,
//! whose event names the gateway and carries the start command.
//!
//! Invoke has no idempotency token, so a retried Invoke starts a second copy of the actor:
//! the SDK's retries are off for it. Only `TooManyRequestsException` (refused before
//! anything ran) is reported as throttling with the `retryAfterSeconds` the service gave,
//! and the pool's backoff decides when to try again. The call waits for the whole
//! invocation (up to the pool's lifespan), so its operation timeout is the lifespan plus a
//! margin and there is no read timeout. The function answers how the request ended: its
//! actor stopped or was handed back at the deadline (a clean end), or it lost the gateway.
//! A function error (`X-Amz-Function-Error`) is an early end with the function's own words.
//!
//! The endpoint comes from the standard AWS configuration chain, so
//! `AWS_ENDPOINT_URL_LAMBDA` points it at `cargo lambda watch` in tests.

use std::time::Duration;

use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use base64::Engine as _;
use tokio::sync::{mpsc, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::{quote, AdapterError, ErrorKind, Invocation, InvocationEvent, InvokeRequest, Platform};

/// Time allowed past the lifespan for the function to answer.
const ANSWER_SLACK: Duration = Duration::from_secs(60);
/// Bytes of a function error quoted back.
const QUOTED_BYTES: usize = 512;

/// A Lambda function.
pub struct LambdaPlatform(std::sync::Arc<Function>);

struct Function {
    function: String,
    qualifier: Option<String>,
    region: Option<String>,
    /// Built on first use (loading AWS configuration is async), then shared.
    client: OnceCell<aws_sdk_lambda::Client>,
}

impl LambdaPlatform {
    /// Invokes `function` (name or ARN), at `qualifier` if given, in `region` or the SDK's
    /// default one.
    pub fn new(function: &str, qualifier: Option<String>, region: Option<String>) -> Self {
        Self(std::sync::Arc::new(Function {
            function: function.to_owned(),
            qualifier,
            region,
            client: OnceCell::new(),
        }))
    }
}

impl Function {
    async fn client(&self, lifespan: Duration) -> aws_sdk_lambda::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let shared = loader.load().await;
                let timeouts = TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_timeout(lifespan + ANSWER_SLACK)
                    .operation_attempt_timeout(lifespan + ANSWER_SLACK)
                    .build();
                let conf = aws_sdk_lambda::config::Builder::from(&shared)
                    // A retried Invoke would start a second copy of the actor.
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(timeouts)
                    .build();
                aws_sdk_lambda::Client::from_conf(conf)
            })
            .await
            .clone()
    }
}

impl Platform for LambdaPlatform {
    fn name(&self) -> &'static str {
        "lambda"
    }

    fn standby(&self) -> bool {
        true
    }

    fn invoke(&self, req: InvokeRequest, cancel: CancellationToken) -> Invocation {
        let (tx, rx) = mpsc::channel(4);
        let f = self.0.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            let client = f.client(req.lifespan).await;
            let end = tokio::select! {
                end = invoke(&client, &f.function, f.qualifier.clone(), req) => end,
                // Closing the connection does not stop the function: the gateway stops the
                // actor over the runner's connection; this only stops waiting.
                _ = token.cancelled() => return,
            };
            let _ = tx.send(end).await;
        });
        Invocation::new(rx, cancel)
    }
}

async fn invoke(
    client: &aws_sdk_lambda::Client,
    function: &str,
    qualifier: Option<String>,
    req: InvokeRequest,
) -> InvocationEvent {
    let mut event = serde_json::json!({
        "endpoint": req.endpoint,
        "namespace": req.namespace,
        "poolName": req.pool,
        "payload": base64::engine::general_purpose::STANDARD.encode(&req.payload),
    });
    if let Some(token) = &req.token {
        event["token"] = serde_json::Value::String(token.clone());
    }
    if let Some(key) = &req.standby {
        event["standbyKey"] = serde_json::Value::String(key.clone());
    }
    let body = serde_json::to_vec(&event).unwrap_or_default();
    let sent = client
        .invoke()
        .function_name(function)
        .set_qualifier(qualifier)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(body))
        .send()
        .await;
    let out = match sent {
        Ok(out) => out,
        Err(err) => return InvocationEvent::Failed(classify(function, err)),
    };
    let payload = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(kind) = out.function_error() {
        return InvocationEvent::Failed(AdapterError::new(
            ErrorKind::FunctionError,
            format!(
                "function {function} failed ({kind}): {}",
                quote(&payload, QUOTED_BYTES)
            ),
        ));
    }
    let answer: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
    match answer["outcome"].as_str() {
        Some("actor_stopped" | "deadline" | "unused") => InvocationEvent::Finished,
        Some("gateway_lost") => InvocationEvent::EndedEarly(format!(
            "function {function} lost its connection to the gateway"
        )),
        _ => InvocationEvent::EndedEarly(format!(
            "function {function} answered without an outcome: {}",
            quote(&payload, QUOTED_BYTES)
        )),
    }
}

fn classify(
    function: &str,
    err: aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::invoke::InvokeError>,
) -> AdapterError {
    use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
    use aws_sdk_lambda::operation::invoke::InvokeError;
    if let Some(InvokeError::TooManyRequestsException(e)) = err.as_service_error() {
        let retry_after = e
            .retry_after_seconds()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = e
            .reason()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_else(|| "TooManyRequests".to_owned());
        return AdapterError::new(
            ErrorKind::Throttled { retry_after },
            format!("Lambda throttled function {function} ({reason}): the account or function concurrency limit caps how many actors run at once"),
        );
    }
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => AdapterError::new(
            ErrorKind::Status(service.raw().status().as_u16()),
            format!(
                "Lambda refused to invoke {function}: {}",
                quote(&detail, QUOTED_BYTES)
            ),
        ),
        _ => AdapterError::new(
            ErrorKind::Unreachable,
            format!(
                "Lambda could not be reached to invoke {function}: {}",
                quote(&detail, QUOTED_BYTES)
            ),
        ),
    }
}
