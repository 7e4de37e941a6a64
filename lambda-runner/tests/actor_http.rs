//! Actions and raw requests over HTTP, in each encoding the client can choose, and how errors
//! reach the client.

mod actor_support;

use actor_support::{call, call_ok, field, int, start, text, MemHost};
use ciborium::Value;
use rivulet_lambda_runner::actor::{
    ActorDef, ActorError, HttpRequest, HttpResponse, Registry, UserError,
};
use rivulet_lambda_runner::examples;
use rivulet_lambda_runner::protocol::Encoding;
use serde::Serialize;

const ENCODINGS: [Encoding; 3] = [Encoding::Json, Encoding::Bare, Encoding::Cbor];

#[tokio::test]
async fn actions_answer_in_every_encoding_with_actor_headers() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "counter", &host, 3).await;
    let mut expected = 0;
    for encoding in ENCODINGS {
        expected += 4;
        let response = runtime
            .handle_http(actor_support::action_request(
                encoding,
                "increment",
                &[int(4)],
                None,
            ))
            .await;
        assert_eq!(response.status, 200, "{encoding:?}");
        assert_eq!(
            actor_support::action_outcome(encoding, &response).expect("output"),
            int(expected),
            "{encoding:?}"
        );
        let content_type = if encoding == Encoding::Json {
            "application/json"
        } else {
            "application/octet-stream"
        };
        assert_eq!(response.header("content-type"), Some(content_type));
        assert_eq!(
            response.header("x-rivet-actor"),
            Some(actor_support::ACTOR_ID)
        );
        assert_eq!(response.header("x-rivet-actor-generation"), Some("3"));
        assert_eq!(response.header("x-rivet-actor-key"), Some("room-1"));
    }
    // The bytes of a BARE answer are what the stock client expects: version 4, then the
    // output as CBOR data (`04 00 01 0c`: data of length 1 holding CBOR 12).
    let response = runtime
        .handle_http(actor_support::action_request(
            Encoding::Bare,
            "get",
            &[],
            None,
        ))
        .await;
    assert_eq!(response.body, [0x04, 0x00, 0x01, 0x0c]);
    runtime.abort();
}

#[tokio::test]
async fn the_demo_counter_refuses_to_wrap_past_i64() {
    let runtime = start(&examples::registry(), "counter", &MemHost::fresh(), 1).await;
    let near = i64::MAX - 1;
    assert_eq!(
        call_ok(&runtime, "increment", &[int(near)]).await,
        int(near)
    );
    let (status, outcome) = call(&runtime, Encoding::Json, "increment", &[int(5)], None).await;
    assert_eq!(status, 400);
    let error = outcome.expect_err("overflow");
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("user", "count_overflow")
    );
    // The refused call changed nothing.
    assert_eq!(call_ok(&runtime, "get", &[]).await, int(near));
    assert_eq!(
        call_ok(&runtime, "increment", &[int(1)]).await,
        int(near + 1)
    );
    runtime.abort();
}

#[tokio::test]
async fn unknown_actions_get_rivetkits_not_found_error() {
    let host = MemHost::fresh();
    let runtime = start(&examples::registry(), "counter", &host, 1).await;
    for encoding in ENCODINGS {
        let (status, outcome) = call(&runtime, encoding, "nope", &[], None).await;
        let error = outcome.expect_err("unknown action");
        assert_eq!(status, 404);
        assert_eq!(error.group, "actor");
        assert_eq!(error.code, "action_not_found");
        assert_eq!(error.message, "Action `nope` was not found.");
        let actor = error.actor.expect("error names the actor");
        assert_eq!(actor.actor_id, actor_support::ACTOR_ID);
        assert_eq!(actor.generation, 1);
    }
    runtime.abort();
}

#[derive(Serialize)]
struct Limit {
    max: i64,
}

fn failing_actor() -> ActorDef<()> {
    ActorDef::new()
        .action("user_error", |_c, ()| async move {
            Err::<(), _>(
                UserError::new("too many widgets")
                    .with_code("too_many")
                    .with_metadata(&Limit { max: 3 })
                    .into(),
            )
        })
        .action("default_code", |_c, ()| async move {
            Err::<(), _>(UserError::new("nope").into())
        })
        .action("io_error", |_c, ()| async move {
            let missing = std::fs::read("/definitely/not/here/secret-path")?;
            Ok(missing.len())
        })
        .action("internal", |_c, ()| async move {
            Err::<(), _>(ActorError::internal("database password is hunter2"))
        })
        .action("panics", |_c, ()| async move {
            if true {
                panic!("secret panic detail");
            }
            Ok(())
        })
        .action(
            "typed",
            |_c, (n, label): (i64, Option<String>)| async move {
                Ok(format!("{n}:{}", label.unwrap_or_default()))
            },
        )
}

#[tokio::test]
async fn user_errors_reach_the_client_and_other_errors_are_masked() {
    let registry = Registry::new().register("failing", failing_actor());
    let host = MemHost::fresh();
    let runtime = start(&registry, "failing", &host, 1).await;

    for encoding in ENCODINGS {
        let (status, outcome) = call(&runtime, encoding, "user_error", &[], None).await;
        let error = outcome.expect_err("user error");
        assert_eq!(status, 400, "{encoding:?}");
        assert_eq!(
            (error.group.as_str(), error.code.as_str()),
            ("user", "too_many")
        );
        assert_eq!(error.message, "too many widgets");
        let metadata = error.metadata.expect("metadata reaches the client");
        assert_eq!(field(&metadata, "max"), Some(&int(3)));
    }

    let (_, outcome) = call(&runtime, Encoding::Json, "default_code", &[], None).await;
    assert_eq!(outcome.expect_err("user error").code, "user_error");

    for action in ["io_error", "internal", "panics"] {
        for encoding in ENCODINGS {
            let (status, outcome) = call(&runtime, encoding, action, &[], None).await;
            let error = outcome.expect_err("masked");
            assert_eq!(status, 500, "{action} {encoding:?}");
            assert_eq!(error.group, "core", "{action}");
            assert_eq!(error.code, "internal_error", "{action}");
            assert_eq!(error.message, "An internal error occurred", "{action}");
            assert_eq!(error.metadata, None, "{action}");
        }
    }
    // The actor is unharmed by the panic.
    assert_eq!(
        call_ok(&runtime, "typed", &[int(7), text("x")]).await,
        text("7:x")
    );
    runtime.abort();
}

#[tokio::test]
async fn arguments_decode_into_typed_tuples() {
    let registry = Registry::new().register("failing", failing_actor());
    let host = MemHost::fresh();
    let runtime = start(&registry, "failing", &host, 1).await;
    // A missing trailing argument is null, so `Option` covers it; extras are ignored.
    assert_eq!(call_ok(&runtime, "typed", &[int(1)]).await, text("1:"));
    assert_eq!(
        call_ok(&runtime, "typed", &[int(2), text("b"), text("extra")]).await,
        text("2:b")
    );
    let (status, outcome) = call(
        &runtime,
        Encoding::Json,
        "typed",
        &[text("not a number")],
        None,
    )
    .await;
    // The caller's mistake: a 4xx that says which argument, not a 500.
    assert_eq!(status, 400);
    let error = outcome.expect_err("bad argument");
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("actor", "validation_error")
    );
    assert_eq!(error.message, "Invalid action `typed` arguments");
    runtime.abort();
}

fn raw_actor() -> ActorDef<i64> {
    ActorDef::new()
        .state(0)
        .on_request(|c, request: HttpRequest| async move {
            let hits = c.update(|hits| {
                *hits += 1;
                *hits
            });
            Ok(HttpResponse::json(
                201,
                &serde_json::json!({
                    "method": request.method,
                    "path": request.path,
                    "body": String::from_utf8_lossy(&request.body),
                    "hits": hits,
                    "custom": request.header("X-Custom"),
                }),
            ))
        })
}

#[tokio::test]
async fn raw_requests_reach_the_handler_without_their_prefix() {
    let registry = Registry::new().register("raw", raw_actor());
    let host = MemHost::fresh();
    let runtime = start(&registry, "raw", &host, 1).await;
    let response = runtime
        .handle_http(HttpRequest {
            method: "PUT".to_owned(),
            path: "/request/items/7?full=1".to_owned(),
            headers: [("x-custom".to_owned(), "yes".to_owned())].into(),
            body: b"payload".to_vec(),
        })
        .await;
    assert_eq!(response.status, 201);
    assert_eq!(
        response.header("x-rivet-actor"),
        Some(actor_support::ACTOR_ID)
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"method": "PUT", "path": "/items/7?full=1", "body": "payload", "hits": 1, "custom": "yes"})
    );

    let root = runtime
        .handle_http(HttpRequest {
            method: "GET".to_owned(),
            path: "/request".to_owned(),
            ..HttpRequest::default()
        })
        .await;
    let body: serde_json::Value = serde_json::from_slice(&root.body).expect("json");
    assert_eq!(body["path"], "/");
    assert_eq!(body["hits"], 2);

    // An actor without a raw handler answers not found.
    let counter = start(&examples::registry(), "counter", &MemHost::fresh(), 1).await;
    let missing = counter
        .handle_http(HttpRequest {
            method: "GET".to_owned(),
            path: "/request/x".to_owned(),
            ..HttpRequest::default()
        })
        .await;
    assert_eq!(missing.status, 404);
    runtime.abort();
    counter.abort();
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let runtime = start(&examples::registry(), "counter", &MemHost::fresh(), 1).await;
    let get = |path: &str| HttpRequest {
        method: "GET".to_owned(),
        path: path.to_owned(),
        ..HttpRequest::default()
    };
    let health = runtime.handle_http(get("/health")).await;
    assert_eq!(
        (health.status, health.body.as_slice()),
        (200, b"ok".as_slice())
    );
    assert_eq!(health.header("x-rivet-actor-generation"), Some("1"));

    let unknown = runtime.handle_http(get("/elsewhere")).await;
    assert_eq!(unknown.status, 404);
    let error: serde_json::Value = serde_json::from_slice(&unknown.body).expect("json error");
    assert_eq!(error["group"], "actor");
    assert_eq!(error["code"], "not_found");

    let wrong_method = runtime.handle_http(get("/action/get")).await;
    assert_eq!(wrong_method.status, 405);
    runtime.abort();
}

#[tokio::test]
async fn http_actions_run_the_connect_hooks_with_header_params() {
    let runtime = start(&examples::registry(), "chat", &MemHost::fresh(), 1).await;
    // No params: on_before_connect rejects with the chat's user error.
    let (status, outcome) = call(&runtime, Encoding::Json, "history", &[], None).await;
    let error = outcome.expect_err("rejected");
    assert_eq!(status, 400);
    assert_eq!(
        (error.group.as_str(), error.code.as_str()),
        ("user", "missing_user")
    );

    let params = Some(r#"{"user":"alice"}"#);
    let (status, outcome) = call(&runtime, Encoding::Bare, "post", &[text("hi")], params).await;
    assert_eq!(status, 200);
    let message = outcome.expect("posted");
    assert_eq!(field(&message, "user"), Some(&text("alice")));
    assert_eq!(field(&message, "text"), Some(&text("hi")));
    let (_, history) = call(&runtime, Encoding::Json, "history", &[], params).await;
    assert_eq!(history.expect("history"), Value::Array(vec![message]));
    runtime.abort();
}
