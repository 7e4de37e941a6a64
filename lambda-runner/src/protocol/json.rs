//! JSON for client-protocol values: a reader that keeps object keys in document order (so a
//! decoded message re-encodes to the same text) and a writer that prints what RivetKit's
//! `jsonStringifyCompat` prints: JS number formatting, compat forms, no whitespace.

use std::fmt;

use ciborium::value::Integer;
use ciborium::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::ProtocolError;
use super::value::{is_safe_integer, js_number_string, key_string, number_value, to_compat};

// === reader ===

/// Parses JSON into a value (not yet revived); object key order is kept.
pub(super) fn parse(bytes: &[u8]) -> Result<Value, ProtocolError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = ValueSeed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Eof => ProtocolError::Truncated(format!("JSON: {e}")),
            _ => ProtocolError::Invalid(format!("JSON: {e}")),
        })?;
    Ok(v)
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    // A JSON number is a JS number: past 2^53 it is the nearest float, as `JSON.parse` reads it
    // (and as CBOR carries it), so every encoding yields the same value.
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(json_integer(i128::from(n)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(json_integer(i128::from(n)))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(number_value(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Text(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Text(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(ValueSeed)?;
            entries.push((Value::Text(k), v));
        }
        Ok(Value::Map(entries))
    }
}

fn json_integer(n: i128) -> Value {
    if is_safe_integer(n) {
        Value::Integer(Integer::from(n as i64))
    } else {
        Value::Float(n as f64)
    }
}

// === writer ===

/// Appends JSON text, laid out as `JSON.stringify` lays it out.
pub(super) struct Writer {
    out: String,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer { out: String::new() }
    }

    pub(super) fn finish(self) -> String {
        self.out
    }

    pub(super) fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// A JSON string; serde_json escapes exactly the characters `JSON.stringify` escapes.
    pub(super) fn string(&mut self, s: &str) {
        self.out
            .push_str(&serde_json::Value::String(s.to_owned()).to_string());
    }

    /// `"key":`
    pub(super) fn key(&mut self, k: &str) {
        self.string(k);
        self.out.push(':');
    }

    /// A JS bigint in compat form.
    pub(super) fn bigint(&mut self, n: u64) {
        self.out.push_str("[\"$BigInt\",\"");
        self.out.push_str(&n.to_string());
        self.out.push_str("\"]");
    }

    /// A JS number.
    pub(super) fn number(&mut self, f: f64) {
        match js_number_string(f) {
            Some(s) => self.out.push_str(&s),
            None => self.out.push_str("null"),
        }
    }

    fn compat_value(&mut self, v: &Value) {
        match v {
            Value::Null => self.raw("null"),
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" }),
            Value::Integer(i) => self.raw(&i128::from(*i).to_string()),
            Value::Float(f) => self.number(*f),
            Value::Text(s) => self.string(s),
            Value::Bytes(_) => {
                // Not reached: compat form has no raw bytes. Keep the writer total anyway.
                self.raw("null")
            }
            Value::Array(items) => {
                self.out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.compat_value(x);
                }
                self.out.push(']');
            }
            Value::Map(entries) => {
                self.out.push('{');
                for (i, (k, x)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.key(&key_string(k));
                    self.compat_value(x);
                }
                self.out.push('}');
            }
            // JSON has no tags; the value inside is the closest thing a JSON client can use.
            Value::Tag(_, inner) => self.compat_value(inner),
            _ => self.raw("null"),
        }
    }

    /// A value of the model, written in compat form.
    pub(super) fn value(&mut self, v: &Value) -> Result<(), ProtocolError> {
        let c = to_compat(v)?;
        self.compat_value(&c);
        Ok(())
    }
}
