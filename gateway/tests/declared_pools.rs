//! Pools declared at start (`--runner-configs`): the real gateway stores them before it
//! serves, as `PUT /runner-configs` would, and one it cannot store yet (its URL does not
//! answer) does not keep the gateway from serving.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestGateway;
use serde_json::json;

#[tokio::test]
async fn declared_pools_are_stored_before_the_gateway_serves() {
    // A port nothing listens on: the URL pool's /metadata cannot be fetched.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = TestGateway::builder()
        .configure(|c| {
            c.runner_configs = vec![
                (
                    "fn".into(),
                    json!({"lambda": {"function": "arn:aws:lambda:eu-west-1:1:function:runner", "request_lifespan": 600}}),
                ),
                (
                    "web".into(),
                    json!({"serverless": {"url": format!("http://{dead}/api"), "request_lifespan": 300}}),
                ),
            ];
        })
        .start()
        .await;
    let (status, body) = gw.api_get("/runner-configs?namespace=default").await;
    assert_eq!(status, 200, "{body}");
    let lambda = &body["runner_configs"]["fn"]["datacenters"]["default"]["lambda"];
    assert_eq!(
        lambda["function"], "arn:aws:lambda:eu-west-1:1:function:runner",
        "{body}"
    );
    assert_eq!(lambda["request_lifespan"], 600, "{body}");
    // Defaults are written in, as for a PUT.
    assert!(lambda["drain_grace_period"].is_number(), "{body}");
    assert!(
        body["runner_configs"].get("web").is_none(),
        "a pool whose endpoint does not answer is not stored: {body}"
    );
}
