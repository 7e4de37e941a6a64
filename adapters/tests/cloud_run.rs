//! Cloud Run's IAM-authenticated invocation: the HTTP adapter sends an ID token for the
//! service URL, minted by a metadata server (a loopback stand-in for Google's, the one fake
//! here) and cached until five minutes before it expires. A service that only accepts the
//! token gets its starts; a metadata server that refuses fails the start, named.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use rivulet_adapters::gcp::IdTokens;
use rivulet_adapters::http::HttpPlatform;
use rivulet_adapters::{ErrorKind, InvocationEvent, InvokeRequest, Platform};
use tokio_util::sync::CancellationToken;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

fn jwt(audience: &str, exp: u64, n: usize) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.sig{n}",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"aud": audience, "exp": exp}))
    )
}

fn request() -> InvokeRequest {
    InvokeRequest {
        standby: None,
        payload: vec![8, 0],
        endpoint: "http://127.0.0.1:6420".into(),
        namespace: "default".into(),
        pool: "run".into(),
        token: None,
        actor_id: "a".into(),
        generation: 1,
        lifespan: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_carry_a_cached_id_token_for_the_service() {
    let minted = Arc::new(AtomicUsize::new(0));
    // Seconds the next token lives: long at first, then short to force a refresh.
    let lifetime = Arc::new(AtomicU64::new(3600));
    let (m, l) = (minted.clone(), lifetime.clone());
    let metadata = serve(Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        get(
            move |headers: HeaderMap,
                  Query(q): Query<std::collections::HashMap<String, String>>| {
                let (m, l) = (m.clone(), l.clone());
                async move {
                    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
                        return (StatusCode::FORBIDDEN, "missing Metadata-Flavor".to_owned());
                    }
                    let n = m.fetch_add(1, Ordering::SeqCst) + 1;
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    (
                        StatusCode::OK,
                        jwt(&q["audience"], now + l.load(Ordering::SeqCst), n),
                    )
                }
            },
        ),
    ))
    .await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let service = serve(Router::new().route(
        "/api/rivet/start",
        post(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if !auth.starts_with("Bearer ") {
                    return (StatusCode::FORBIDDEN, "IAM: no token").into_response();
                }
                s.lock().unwrap().push(auth);
                (
                    [("content-type", "text/event-stream")],
                    "event: ping\ndata:\n\nevent: stopping\ndata:\n\n",
                )
                    .into_response()
            }
        }),
    ))
    .await;
    let tokens: &'static IdTokens = Box::leak(Box::new(IdTokens::new(&metadata)));
    let url = format!("http://{service}/api/rivet");
    let platform = HttpPlatform::new(&url, Default::default(), None).with_id_tokens(tokens);
    for _ in 0..2 {
        let end = platform
            .invoke(request(), CancellationToken::new())
            .ended()
            .await;
        assert_eq!(end, InvocationEvent::Finished);
    }
    assert_eq!(minted.load(Ordering::SeqCst), 1, "the token is cached");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let payload = seen[0]
            .trim_start_matches("Bearer ")
            .split('.')
            .nth(1)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["aud"],
            format!("http://{}", service.split(':').next().unwrap())
        );
    }

    // A token within five minutes of its end is replaced before it is used.
    let fresh: &'static IdTokens = Box::leak(Box::new(IdTokens::new(&metadata)));
    lifetime.store(200, Ordering::SeqCst);
    let platform = HttpPlatform::new(&url, Default::default(), None).with_id_tokens(fresh);
    for _ in 0..2 {
        let end = platform
            .invoke(request(), CancellationToken::new())
            .ended()
            .await;
        assert_eq!(end, InvocationEvent::Finished);
    }
    assert_eq!(
        minted.load(Ordering::SeqCst),
        3,
        "a short-lived token is minted again"
    );

    // No metadata server: the start fails, named, and the service is never called.
    let none: &'static IdTokens = Box::leak(Box::new(IdTokens::new("127.0.0.1:9")));
    let platform = HttpPlatform::new(&url, Default::default(), None).with_id_tokens(none);
    let before = seen.lock().unwrap().len();
    let end = platform
        .invoke(request(), CancellationToken::new())
        .ended()
        .await;
    let InvocationEvent::Failed(err) = end else {
        panic!("{end:?}")
    };
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.code(), "auth_failed");
    assert!(err.message.contains("metadata server"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), before);
}

/// The token endpoint stand-in: checks the assertion's RS256 signature with the key's public
/// half and its claims, then answers an ID token for the asked audience.
fn token_endpoint(minted: Arc<AtomicUsize>, email: &'static str) -> axum::routing::MethodRouter {
    post(move |body: String| {
        let minted = minted.clone();
        async move {
            let form = reqwest::Url::parse(&format!("http://form.invalid/?{body}")).unwrap();
            let field = |name: &str| {
                form.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
                return (StatusCode::BAD_REQUEST, "unsupported_grant_type".to_owned());
            }
            let public = include_bytes!("fixtures/test-service-account.pub");
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(public).unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_issuer(&[email]);
            validation.validate_aud = false;
            let claims = match jsonwebtoken::decode::<serde_json::Value>(
                &field("assertion"),
                &key,
                &validation,
            ) {
                Ok(data) => data.claims,
                Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid_grant: {e}")),
            };
            if !claims["aud"].as_str().unwrap_or("").ends_with("/token") {
                return (StatusCode::BAD_REQUEST, "invalid_grant: aud".to_owned());
            }
            let audience = claims["target_audience"].as_str().unwrap_or("").to_owned();
            let n = minted.fetch_add(1, Ordering::SeqCst) + 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let id_token = jwt(&audience, now + 3600, n);
            (
                StatusCode::OK,
                serde_json::json!({ "id_token": id_token }).to_string(),
            )
        }
    })
}

/// A gateway outside Google Cloud: a service-account key file signs a JWT that the token
/// endpoint exchanges for an ID token for the service; cached like the metadata server's. A
/// key the endpoint rejects, or a file that is no service-account key, fails the start, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_mints_id_tokens_at_the_token_endpoint() {
    const EMAIL: &str = "gateway@project.iam.gserviceaccount.com";
    let minted = Arc::new(AtomicUsize::new(0));
    let oauth = serve(Router::new().route("/token", token_endpoint(minted.clone(), EMAIL))).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let service = serve(Router::new().route(
        "/api/rivet/start",
        post(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if !auth.starts_with("Bearer ") {
                    return (StatusCode::FORBIDDEN, "IAM: no token").into_response();
                }
                s.lock().unwrap().push(auth);
                (
                    [("content-type", "text/event-stream")],
                    "event: stopping\ndata:\n\n",
                )
                    .into_response()
            }
        }),
    ))
    .await;
    let key_file = |email: &str| {
        serde_json::json!({
            "type": "service_account",
            "client_email": email,
            "private_key": include_str!("fixtures/test-service-account.key"),
            "token_uri": format!("http://{oauth}/token"),
        })
        .to_string()
    };
    let key = rivulet_adapters::gcp::ServiceAccountKey::from_json(&key_file(EMAIL)).unwrap();
    assert!(
        !format!("{key:?}").contains("PRIVATE KEY"),
        "the key never reaches a log"
    );
    let tokens: &'static IdTokens = Box::leak(Box::new(IdTokens::from_service_account(key)));
    let url = format!("http://{service}/api/rivet");
    let platform = HttpPlatform::new(&url, Default::default(), None).with_id_tokens(tokens);
    for _ in 0..2 {
        let end = platform
            .invoke(request(), CancellationToken::new())
            .ended()
            .await;
        assert_eq!(end, InvocationEvent::Finished);
    }
    assert_eq!(minted.load(Ordering::SeqCst), 1, "the token is cached");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let payload = seen[0]
            .trim_start_matches("Bearer ")
            .split('.')
            .nth(1)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["aud"],
            format!("http://{}", service.split(':').next().unwrap()),
            "the token is for the service"
        );
    }

    // A key of another account (the endpoint's check fails): named, and nothing is sent.
    let wrong =
        rivulet_adapters::gcp::ServiceAccountKey::from_json(&key_file("someone@else")).unwrap();
    let wrong: &'static IdTokens = Box::leak(Box::new(IdTokens::from_service_account(wrong)));
    let platform = HttpPlatform::new(&url, Default::default(), None).with_id_tokens(wrong);
    let end = platform
        .invoke(request(), CancellationToken::new())
        .ended()
        .await;
    let InvocationEvent::Failed(err) = end else {
        panic!("{end:?}")
    };
    assert_eq!(err.code(), "auth_failed");
    assert!(err.message.contains("invalid_grant"), "{err}");
    assert!(err.message.contains("someone@else"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);

    // Files that cannot mint ID tokens are refused when read, saying why.
    let user =
        serde_json::json!({"type": "authorized_user", "client_email": "", "private_key": ""});
    let err = rivulet_adapters::gcp::ServiceAccountKey::from_json(&user.to_string()).unwrap_err();
    assert!(err.contains("service-account key is needed"), "{err}");
    let bad =
        serde_json::json!({"type": "service_account", "client_email": "x", "private_key": "nope"});
    let err = rivulet_adapters::gcp::ServiceAccountKey::from_json(&bad.to_string()).unwrap_err();
    assert!(err.contains("PEM"), "{err}");
}
