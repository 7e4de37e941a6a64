//! Unit tests for the pure helpers behind the codec: JS number formatting, bigints, compat
//! forms, CBOR edge cases. Wire-level behaviour is tested in `tests/protocol.rs`.
#![allow(clippy::unwrap_used)]

use ciborium::value::Integer;
use ciborium::Value;

use super::value::{bigint_from_decimal, js_number_string, revive, to_compat};
use super::{cbor, json, ProtocolError};

fn int(i: i128) -> Value {
    Value::Integer(Integer::try_from(i).unwrap())
}

#[test]
fn numbers_print_as_javascript_prints_them() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (123456789012.0, "123456789012"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e20, "100000000000000000000"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (0.000123, "0.000123"),
    ];
    for (f, want) in cases {
        assert_eq!(js_number_string(*f).as_deref(), Some(*want), "{f:e}");
    }
    assert_eq!(js_number_string(f64::NAN), None);
    assert_eq!(js_number_string(f64::INFINITY), None);
}

#[test]
fn bigints_round_trip_through_decimal() {
    for s in [
        "0",
        "18446744073709551615",
        "-18446744073709551616",
        "18446744073709551616",
        "-18446744073709551617",
        "1180591620717411303424",
        "-340282366920938463463374607431768211456",
    ] {
        let v = bigint_from_decimal(s).unwrap();
        let c = to_compat(&v).unwrap();
        let want = if s == "0" {
            int(0)
        } else {
            Value::Array(vec![Value::Text("$BigInt".into()), Value::Text(s.into())])
        };
        assert_eq!(c, want, "{s}");
        assert_eq!(revive(c).unwrap(), v);
    }
    assert!(matches!(
        bigint_from_decimal("18446744073709551615").unwrap(),
        Value::Integer(_)
    ));
    assert!(matches!(
        bigint_from_decimal("18446744073709551616").unwrap(),
        Value::Tag(2, _)
    ));
    assert!(matches!(
        bigint_from_decimal("-18446744073709551617").unwrap(),
        Value::Tag(3, _)
    ));
    assert!(bigint_from_decimal("1.5").is_err());
    assert!(bigint_from_decimal("").is_err());
    assert!(bigint_from_decimal(&"9".repeat(5000)).is_err());
}

#[test]
fn literal_dollar_arrays_are_escaped_and_restored() {
    let v = Value::Array(vec![Value::Text("$BigInt".into()), Value::Text("5".into())]);
    let c = to_compat(&v).unwrap();
    assert_eq!(
        c,
        Value::Array(vec![
            Value::Text("$$BigInt".into()),
            Value::Text("5".into())
        ])
    );
    assert_eq!(revive(c).unwrap(), v);
    // Three elements are never a compat form.
    let three = Value::Array(vec![Value::Text("$x".into()), int(1), int(2)]);
    assert_eq!(to_compat(&three).unwrap(), three);
    assert_eq!(revive(three.clone()).unwrap(), three);
}

#[test]
fn values_inside_any_cbor_tag_survive_being_passed_on() {
    // A two-element array starting with `$` inside an unknown tag: escaped on the way out,
    // unescaped on the way in, however many times it travels.
    let v = Value::Tag(
        1,
        Box::new(Value::Array(vec![
            Value::Array(vec![Value::Text("$fo".into()), int(1)]),
            Value::Array(vec![Value::Text("$$x".into()), int(2)]),
            int(1 << 60),
        ])),
    );
    let mut travelled = v.clone();
    for _ in 0..3 {
        travelled = revive(to_compat(&travelled).unwrap()).unwrap();
    }
    assert_eq!(travelled, v);
}

#[test]
fn unknown_compat_tags_are_invalid() {
    let v = Value::Array(vec![Value::Text("$Nope".into()), int(1)]);
    assert!(matches!(revive(v), Err(ProtocolError::Invalid(_))));
}

#[test]
fn cbor_reader_normalises_what_cbor_x_sends() {
    // tag 64 over bytes (a Node Uint8Array) is bytes.
    assert_eq!(
        cbor::decode(&[0xd8, 0x40, 0x42, 1, 2]).unwrap(),
        Value::Bytes(vec![1, 2])
    );
    // 64-bit integer (a bigint) is an integer.
    assert_eq!(
        cbor::decode(&[0x1b, 0, 0, 0, 0, 0, 0, 0, 5]).unwrap(),
        int(5)
    );
    // float64 of a safe integer is an integer; of a fraction stays a float.
    let mut two40 = vec![0xfb];
    two40.extend_from_slice(&(2f64.powi(40)).to_bits().to_be_bytes());
    assert_eq!(cbor::decode(&two40).unwrap(), int(1 << 40));
    assert_eq!(
        cbor::decode(&[0xf9, 0x3e, 0x00]).unwrap(),
        Value::Float(1.5)
    );
    // undefined is null; tag 259 is its map; indefinite arrays are arrays.
    assert_eq!(cbor::decode(&[0xf7]).unwrap(), Value::Null);
    assert_eq!(
        cbor::decode(&[0xd9, 0x01, 0x03, 0xa1, 0x01, 0x02]).unwrap(),
        Value::Map(vec![(int(1), int(2))])
    );
    assert_eq!(
        cbor::decode(&[0x9f, 0x01, 0x02, 0xff]).unwrap(),
        Value::Array(vec![int(1), int(2)])
    );
    // tag 2 bignum that fits is an integer.
    assert_eq!(cbor::decode(&[0xc2, 0x41, 0x07]).unwrap(), int(7));
}

#[test]
fn cbor_reader_tells_truncated_from_invalid() {
    assert!(matches!(
        cbor::decode(&[0x82, 0x01]),
        Err(ProtocolError::Truncated(_))
    ));
    assert!(matches!(
        cbor::decode(&[0x7a, 0xff, 0xff, 0xff, 0xff]),
        Err(ProtocolError::Truncated(_))
    ));
    assert!(matches!(
        cbor::decode(&[0x01, 0x02]),
        Err(ProtocolError::Invalid(_))
    ));
    assert!(matches!(
        cbor::decode(&[0xff]),
        Err(ProtocolError::Invalid(_))
    ));
    assert!(matches!(
        cbor::decode(&[0x62, 0xff, 0xfe]),
        Err(ProtocolError::Invalid(_))
    ));
    let deep = vec![0x81u8; 1000];
    assert!(matches!(
        cbor::decode(&deep),
        Err(ProtocolError::Invalid(_))
    ));
}

#[test]
fn cbor_writer_lays_out_values_as_cbor_x() {
    let v = Value::Map(vec![(
        Value::Text("a".into()),
        Value::Array(vec![
            int(1),
            int(-1),
            int(1 << 40),
            Value::Float(1.5),
            Value::Float(2.0),
        ]),
    )]);
    let bytes = cbor::encode_value(&v).unwrap();
    let mut want = vec![0xb9, 0x00, 0x01, 0x61, b'a', 0x85, 0x01, 0x20, 0xfb];
    want.extend_from_slice(&(2f64.powi(40)).to_bits().to_be_bytes());
    want.push(0xfb);
    want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
    want.push(0x02);
    assert_eq!(bytes, want);
}

#[test]
fn json_reader_keeps_key_order_and_reads_numbers_as_js_does() {
    let v = json::parse(br#"{"b":1,"a":[1.0,1.5,-0,12345678901234567890]}"#).unwrap();
    let Value::Map(m) = v else { panic!() };
    assert_eq!(m[0].0, Value::Text("b".into()));
    assert_eq!(
        m[1].1,
        Value::Array(vec![
            int(1),
            Value::Float(1.5),
            int(0),
            Value::Float(12345678901234567890.0)
        ])
    );
    assert!(matches!(
        json::parse(br#"{"a":"#),
        Err(ProtocolError::Truncated(_))
    ));
    assert!(matches!(
        json::parse(br#"{"a":1}x"#),
        Err(ProtocolError::Invalid(_))
    ));
}

#[test]
fn json_numbers_parse_to_the_nearest_double_as_javascript_does() {
    // Literals where a fast, inexact parser lands one unit off (found by rivulet-fuzz).
    for literal in [
        "9.027199254740027e+27",
        "9027199254740027199254740994",
        "2.2250738585072011e-308",
        "0.1000000000000000055511151231257827",
        "1.7976931348623157e308",
    ] {
        let want: f64 = literal.parse().unwrap();
        assert_eq!(
            json::parse(literal.as_bytes()).unwrap(),
            Value::Float(want),
            "{literal}"
        );
    }
}
