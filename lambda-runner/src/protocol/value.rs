//! The value model shared by the three encodings, and RivetKit's JSON-compat forms.
//!
//! A `ciborium::Value` stands for the JavaScript value a RivetKit client sends or receives:
//! `Integer` is a JS number when it is a safe integer (|n| <= 2^53 - 1) and a `bigint` otherwise;
//! `Float` is a JS number; `Bytes` is a `Uint8Array`; `Map` is a plain object (text keys) or a
//! `Map`; `Tag(258, Array)` is a `Set`; `Tag(2 | 3, Bytes)` is a bigint beyond the 64-bit range.
//! JS `undefined` has no counterpart and decodes as `Null`. Decoders normalise every JS number
//! that is a safe integer to `Integer`, so the same call yields the same value in every encoding.
//!
//! On the wire RivetKit carries values in "compat" form (`rivetkit/src/common/encoding.ts`,
//! `encodeJsonCompatValue` / `reviveJsonCompatValue`): a bigint is `["$BigInt", "123"]`, bytes
//! are `["$Uint8Array", base64]`, a set is `["$Set", [...]]`, and a literal two-element array
//! whose first element is a string starting with `$` gets one more `$`. Compat form travels
//! inside CBOR too (BARE `data` fields, and the CBOR encoding, both revived by the client), so
//! every encoder here writes it and every decoder revives it.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ciborium::value::Integer;
use ciborium::Value;

use super::error::ProtocolError;

/// Largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub(super) const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// Values nested deeper than this are refused, so hostile input cannot exhaust the stack.
pub(super) const MAX_DEPTH: usize = 128;

/// Bigints with more decimal digits than this are refused: conversion is quadratic in length.
const MAX_BIGINT_DIGITS: usize = 4096;

const TAG_BIGNUM_POS: u64 = 2;
const TAG_BIGNUM_NEG: u64 = 3;
/// CBOR tag for a set (cbor-x writes JS `Set`s with it).
pub(super) const TAG_SET: u64 = 258;

const COMPAT_BIGINT: &str = "$BigInt";
const COMPAT_ARRAY_BUFFER: &str = "$ArrayBuffer";
const COMPAT_UINT8_ARRAY: &str = "$Uint8Array";
const COMPAT_UNDEFINED: &str = "$Undefined";
const COMPAT_SET: &str = "$Set";

/// Node's `Buffer.from(s, "base64")` accepts missing padding; so do we.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

// === numbers ===

/// The value a JS number decodes to: an integer when it is a safe integer, else a float.
pub(super) fn number_value(f: f64) -> Value {
    if f.is_finite() && f.trunc() == f && f.abs() <= MAX_SAFE_INTEGER as f64 {
        // The guard above makes the cast exact.
        Value::Integer(Integer::from(f as i64))
    } else {
        Value::Float(f)
    }
}

/// Whether an integer is a JS number (true) or a bigint (false) in our value model.
pub(super) fn is_safe_integer(i: i128) -> bool {
    (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i)
}

/// Formats a finite f64 as JavaScript's `Number.prototype.toString` does (and so
/// `JSON.stringify`); `None` for NaN and infinities, which JSON writes as `null`.
pub(super) fn js_number_string(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    if f == 0.0 {
        return Some("0".to_owned());
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as ECMAScript requires.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n >= 1 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    Some(out)
}

// === bigints beyond 64 bits ===

/// Parses the decimal text of a JS bigint (`BigInt(s)` for decimal `s`).
pub(super) fn bigint_from_decimal(s: &str) -> Result<Value, ProtocolError> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::Invalid(format!("`{s}` is not a bigint")));
    }
    if digits.len() > MAX_BIGINT_DIGITS {
        return Err(ProtocolError::Invalid(format!(
            "bigint longer than {MAX_BIGINT_DIGITS} digits"
        )));
    }
    if digits.len() <= 30 {
        // Fits i128 comfortably; `Integer` covers -2^64 ..= 2^64 - 1.
        let magnitude: i128 = digits
            .parse()
            .map_err(|_| ProtocolError::Invalid(format!("`{s}` is not a bigint")))?;
        let n = if negative { -magnitude } else { magnitude };
        if let Ok(i) = Integer::try_from(n) {
            return Ok(Value::Integer(i));
        }
    }
    let mut magnitude: Vec<u8> = Vec::new();
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in magnitude.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    Ok(bignum_value(negative, magnitude))
}

/// A bignum of the given sign and magnitude, as an `Integer` when it fits.
fn bignum_value(negative: bool, magnitude: Vec<u8>) -> Value {
    let magnitude = strip_leading_zeros(magnitude);
    if magnitude.len() <= 8 {
        let mut buf = [0u8; 8];
        buf[8 - magnitude.len()..].copy_from_slice(&magnitude);
        let m = i128::from(u64::from_be_bytes(buf));
        let n = if negative { -m } else { m };
        if let Ok(i) = Integer::try_from(n) {
            return Value::Integer(i);
        }
    }
    if negative {
        // CBOR tag 3 holds -1 - n.
        Value::Tag(TAG_BIGNUM_NEG, Box::new(Value::Bytes(sub_one(&magnitude))))
    } else {
        Value::Tag(TAG_BIGNUM_POS, Box::new(Value::Bytes(magnitude)))
    }
}

/// The value of a CBOR bignum tag (2 or 3) over its magnitude bytes, as an `Integer` if it fits.
pub(super) fn bignum_from_tag(tag: u64, bytes: Vec<u8>) -> Value {
    if tag == TAG_BIGNUM_NEG {
        bignum_value(true, add_one(&bytes))
    } else {
        bignum_value(false, bytes)
    }
}

/// Decimal text of a bignum tag (2 or 3), `None` if it is not one or is too long to convert.
fn bignum_decimal(tag: u64, bytes: &[u8]) -> Option<String> {
    let (negative, magnitude) = match tag {
        TAG_BIGNUM_POS => (false, bytes.to_vec()),
        TAG_BIGNUM_NEG => (true, add_one(bytes)),
        _ => return None,
    };
    if magnitude.len() > MAX_BIGINT_DIGITS / 2 {
        return None;
    }
    let mut rest = strip_leading_zeros(magnitude);
    let mut chunks: Vec<u32> = Vec::new();
    while !rest.is_empty() {
        let mut remainder: u64 = 0;
        for byte in rest.iter_mut() {
            let cur = (remainder << 8) | u64::from(*byte);
            *byte = (cur / 1_000_000_000) as u8;
            remainder = cur % 1_000_000_000;
        }
        chunks.push(remainder as u32);
        rest = strip_leading_zeros(rest);
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    match chunks.split_last() {
        None => out.push('0'),
        Some((top, lower)) => {
            out.push_str(&top.to_string());
            for chunk in lower.iter().rev() {
                out.push_str(&format!("{chunk:09}"));
            }
        }
    }
    Some(out)
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn add_one(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for byte in out.iter_mut().rev() {
        if *byte == 0xff {
            *byte = 0;
        } else {
            *byte += 1;
            return out;
        }
    }
    out.insert(0, 1);
    out
}

/// `bytes - 1` for a non-zero magnitude.
fn sub_one(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for byte in out.iter_mut().rev() {
        if *byte == 0 {
            *byte = 0xff;
        } else {
            *byte -= 1;
            break;
        }
    }
    strip_leading_zeros(out)
}

// === compat form ===

fn compat_pair(tag: &str, v: Value) -> Value {
    Value::Array(vec![Value::Text(tag.to_owned()), v])
}

/// Rewrites a value into compat form (what `encodeJsonCompatValue` produces for the JS value).
pub(super) fn to_compat(v: &Value) -> Result<Value, ProtocolError> {
    to_compat_at(v, 0)
}

fn to_compat_at(v: &Value, depth: usize) -> Result<Value, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::Unencodable(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(match v {
        Value::Integer(i) => {
            let n = i128::from(*i);
            if is_safe_integer(n) {
                v.clone()
            } else {
                compat_pair(COMPAT_BIGINT, Value::Text(n.to_string()))
            }
        }
        Value::Bytes(b) => compat_pair(COMPAT_UINT8_ARRAY, Value::Text(STANDARD.encode(b))),
        Value::Tag(tag @ (TAG_BIGNUM_POS | TAG_BIGNUM_NEG), inner) => match inner.as_ref() {
            Value::Bytes(b) => {
                let decimal = bignum_decimal(*tag, b).ok_or_else(|| {
                    ProtocolError::Unencodable("bigint too large to encode".to_owned())
                })?;
                compat_pair(COMPAT_BIGINT, Value::Text(decimal))
            }
            other => Value::Tag(*tag, Box::new(to_compat_at(other, depth + 1)?)),
        },
        Value::Tag(TAG_SET, inner) => match inner.as_ref() {
            Value::Array(items) => compat_pair(
                COMPAT_SET,
                Value::Array(
                    items
                        .iter()
                        .map(|x| to_compat_at(x, depth + 1))
                        .collect::<Result<_, _>>()?,
                ),
            ),
            other => Value::Tag(TAG_SET, Box::new(to_compat_at(other, depth + 1)?)),
        },
        Value::Tag(tag, inner) => Value::Tag(*tag, Box::new(to_compat_at(inner, depth + 1)?)),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .map(|x| to_compat_at(x, depth + 1))
                .collect::<Result<_, _>>()?;
            if out.len() == 2 {
                if let Value::Text(first) = &mut out[0] {
                    if first.starts_with('$') {
                        first.insert(0, '$');
                    }
                }
            }
            Value::Array(out)
        }
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, x)| Ok((to_compat_at(k, depth + 1)?, to_compat_at(x, depth + 1)?)))
                .collect::<Result<_, ProtocolError>>()?,
        ),
        _ => v.clone(),
    })
}

/// Undoes compat form (what `reviveJsonCompatValue` does), normalising numbers on the way.
pub(super) fn revive(v: Value) -> Result<Value, ProtocolError> {
    revive_at(v, 0)
}

fn revive_at(v: Value, depth: usize) -> Result<Value, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::Invalid(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::Array(items) => {
            let tagged = matches!(items.as_slice(), [Value::Text(t), _] if t.starts_with('$'));
            if !tagged {
                return Ok(Value::Array(
                    items
                        .into_iter()
                        .map(|x| revive_at(x, depth + 1))
                        .collect::<Result<_, _>>()?,
                ));
            }
            let mut it = items.into_iter();
            let (Some(Value::Text(tag)), Some(payload)) = (it.next(), it.next()) else {
                return Err(ProtocolError::Invalid("malformed compat value".to_owned()));
            };
            revive_tagged(tag, payload, depth)
        }
        Value::Map(entries) => Ok(Value::Map(
            entries
                .into_iter()
                .map(|(k, x)| Ok((revive_at(k, depth + 1)?, revive_at(x, depth + 1)?)))
                .collect::<Result<_, ProtocolError>>()?,
        )),
        // Every tag, as `to_compat_at` descends into every tag: otherwise a value inside an
        // unknown tag would gain a `$` each time it is passed on (found by rivulet-fuzz).
        Value::Tag(tag, inner) => Ok(Value::Tag(tag, Box::new(revive_at(*inner, depth + 1)?))),
        Value::Float(f) => Ok(number_value(f)),
        other => Ok(other),
    }
}

fn revive_tagged(tag: String, payload: Value, depth: usize) -> Result<Value, ProtocolError> {
    match tag.as_str() {
        COMPAT_BIGINT => match payload {
            Value::Text(s) => bigint_from_decimal(&s),
            Value::Integer(_) => Ok(payload),
            _ => Err(ProtocolError::Invalid(
                "`$BigInt` payload is not a string".to_owned(),
            )),
        },
        COMPAT_ARRAY_BUFFER | COMPAT_UINT8_ARRAY => match payload {
            Value::Text(s) => decode_base64(&s).map(Value::Bytes),
            _ => Err(ProtocolError::Invalid(format!(
                "`{tag}` payload is not a string"
            ))),
        },
        COMPAT_UNDEFINED => Ok(Value::Null),
        COMPAT_SET => match payload {
            Value::Array(items) => Ok(Value::Tag(
                TAG_SET,
                Box::new(Value::Array(
                    items
                        .into_iter()
                        .map(|x| revive_at(x, depth + 1))
                        .collect::<Result<_, _>>()?,
                )),
            )),
            _ => Err(ProtocolError::Invalid(
                "`$Set` payload is not an array".to_owned(),
            )),
        },
        escaped if escaped.starts_with("$$") => Ok(Value::Array(vec![
            Value::Text(escaped[1..].to_owned()),
            revive_at(payload, depth + 1)?,
        ])),
        unknown => Err(ProtocolError::Invalid(format!(
            "unknown JSON compat type `{unknown}`"
        ))),
    }
}

fn decode_base64(s: &str) -> Result<Vec<u8>, ProtocolError> {
    // Node also takes the URL-safe alphabet and skips whitespace.
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    LENIENT_BASE64
        .decode(cleaned.as_bytes())
        .map_err(|e| ProtocolError::Invalid(format!("invalid base64: {e}")))
}

/// A map key lookup with JS object semantics: the last duplicate wins.
pub(super) fn get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .rev()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}

// === plain JSON ===

/// Plain JSON to a value, without reviving compat forms (for connection parameters and inputs).
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Integer(Integer::from(u))
            } else if let Some(i) = n.as_i64() {
                Value::Integer(Integer::from(i))
            } else {
                number_value(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, x)| (Value::Text(k.clone()), json_to_value(x)))
                .collect(),
        ),
    }
}

/// A value as JSON in the compat form JSON clients see (`["$BigInt", "..."]`,
/// `["$Uint8Array", base64]`, ...), so `json_compat_to_value` gets it back unchanged.
/// Non-text map keys become strings; a value nested too deep becomes `null`.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match to_compat(v) {
        Ok(c) => compat_to_json(&c),
        Err(_) => serde_json::Value::Null,
    }
}

/// JSON in compat form to a value, reviving `["$BigInt", "..."]` and the other tagged forms.
pub fn json_compat_to_value(v: &serde_json::Value) -> Result<Value, ProtocolError> {
    revive(json_to_value(v))
}

fn compat_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(u) = u64::try_from(n) {
                serde_json::Value::from(u)
            } else if let Ok(s) = i64::try_from(n) {
                serde_json::Value::from(s)
            } else {
                serde_json::Value::String(n.to_string())
            }
        }
        Value::Float(f) => match number_value(*f) {
            Value::Integer(i) => compat_to_json(&Value::Integer(i)),
            _ => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        },
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Bytes(b) => serde_json::Value::String(STANDARD.encode(b)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(compat_to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, x)| (key_string(k), compat_to_json(x)))
                .collect(),
        ),
        Value::Tag(_, inner) => compat_to_json(inner),
        _ => serde_json::Value::Null,
    }
}

/// The string a JSON object key takes for a map key that is not text.
pub(super) fn key_string(k: &Value) -> String {
    match k {
        Value::Text(s) => s.clone(),
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Float(f) => js_number_string(*f).unwrap_or_else(|| "NaN".to_owned()),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        other => compat_to_json(other).to_string(),
    }
}
