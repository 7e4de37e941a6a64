//! Unit tests of the pure parts: argument decoding, the state layout, error masking.

use ciborium::Value;

use super::args::{FromArgs, IntoArgs, RawArgs};
use super::error::{ActorError, SaveError, UserError};
use super::persist::{state_chunk_key, state_entries, state_header_key, MAX_STATE_BYTES};

fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

#[test]
fn tuples_decode_like_javascript_arguments() {
    let args = vec![int(1), Value::Text("a".to_owned()), int(9)];
    let (n, s): (i64, String) = FromArgs::from_args(args.clone()).expect("decodes");
    assert_eq!((n, s.as_str()), (1, "a"));
    // Missing trailing arguments are null.
    let (n, missing): (i64, Option<String>) = FromArgs::from_args(vec![int(2)]).expect("decodes");
    assert_eq!((n, missing), (2, None));
    // A wrong type names the argument.
    let error =
        <(i64, i64)>::from_args(vec![int(1), Value::Text("x".to_owned())]).expect_err("mismatch");
    assert!(error.starts_with("argument 1:"), "{error}");
    // () takes anything; RawArgs keeps everything.
    assert!(<()>::from_args(args.clone()).is_ok());
    assert_eq!(RawArgs::from_args(args.clone()).expect("raw").0, args);
}

#[test]
fn tuples_encode_as_argument_arrays() {
    assert_eq!((5i64,).into_args().expect("encodes"), [int(5)]);
    assert_eq!(
        (1i64, "two", true).into_args().expect("encodes"),
        [int(1), Value::Text("two".to_owned()), Value::Bool(true)]
    );
    assert!(().into_args().expect("encodes").is_empty());
}

#[test]
fn state_is_split_into_chunks_under_one_header() {
    let (entries, chunks) = state_entries(&[7; 10]).expect("small");
    assert_eq!(chunks, 1);
    assert_eq!(entries[0].0, state_header_key());
    assert_eq!(entries[1], (state_chunk_key(0), vec![7; 10]));

    let big = vec![1u8; 200 * 1024];
    let (entries, chunks) = state_entries(&big).expect("chunked");
    assert_eq!(chunks, 3);
    assert_eq!(entries.len(), 4);
    let joined: Vec<u8> = entries[1..]
        .iter()
        .flat_map(|(_, value)| value.clone())
        .collect();
    assert_eq!(joined, big);
    // Every write stays inside the gateway's per-request limits.
    let bytes: usize = entries
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    assert!(bytes < 976 * 1024);
    assert!(entries.iter().all(|(_, value)| value.len() <= 128 * 1024));

    let (_, chunks) = state_entries(&[]).expect("empty");
    assert_eq!(chunks, 1);
    let (entries, _) = state_entries(&vec![0; MAX_STATE_BYTES]).expect("largest");
    let bytes: usize = entries
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    assert!(bytes < 976 * 1024);
    assert_eq!(
        state_entries(&vec![0; MAX_STATE_BYTES + 1]).expect_err("too large"),
        SaveError::TooLarge {
            bytes: MAX_STATE_BYTES + 1,
            limit: MAX_STATE_BYTES
        }
    );
}

#[test]
fn what_clients_see_of_errors() {
    let user: ActorError = UserError::new("no")
        .with_code("denied")
        .with_metadata(&serde_json::json!({"retry": false}))
        .into();
    let body = user.to_error_body(None, Some(3));
    assert_eq!(
        (
            body.group.as_str(),
            body.code.as_str(),
            body.message.as_str()
        ),
        ("user", "denied", "no")
    );
    assert_eq!(body.action_id, Some(3));
    assert!(body.metadata.is_some());

    let default_code: ActorError = UserError::new("x").into();
    assert_eq!(default_code.client_view().1, "user_error");

    let io = ActorError::from(std::io::Error::other("disk /secret failed"));
    let body = io.to_error_body(None, None);
    assert_eq!(
        (
            body.group.as_str(),
            body.code.as_str(),
            body.message.as_str()
        ),
        ("core", "internal_error", "An internal error occurred")
    );
    assert_eq!(body.metadata, None);
    assert!(
        io.to_string().contains("/secret"),
        "the log keeps the detail"
    );

    let missing = ActorError::action_not_found("fly");
    assert_eq!(
        missing.client_view(),
        (
            "actor".to_owned(),
            "action_not_found".to_owned(),
            "Action `fly` was not found.".to_owned()
        )
    );
}
