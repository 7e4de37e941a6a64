//! CBOR for client-protocol values: a strict reader to `ciborium::Value` that tells truncated
//! input from garbage, and a writer that lays bytes out as cbor-x 1.6 (RivetKit's encoder)
//! does, so our frames are byte-identical to the reference codec's.
//!
//! cbor-x's layout, which the writer follows: a JS number is the shortest CBOR integer when it
//! is an integer in [-2^32, 2^32), else a float64; a plain object is a map with a 16-bit
//! length (`b9 nn nn`) whatever its size; a `Map` with other keys is tag 259 over a shortest-
//! length map; arrays, strings and tags take the shortest length. The reader accepts any
//! well-formed CBOR (shortest or not, indefinite lengths) and normalises what cbor-x may send:
//! tag 64 over bytes (a Node `Uint8Array`) is bytes, tag 259 is its map, tags 2 and 3 are
//! integers when they fit, `undefined` is null, and every float that is a safe integer is an
//! integer.

use ciborium::value::Integer;
use ciborium::Value;

use super::error::ProtocolError;
use super::value::{bignum_from_tag, is_safe_integer, number_value, to_compat, MAX_DEPTH};

const TAG_TYPED_UINT8: u64 = 64;
const TAG_EXPLICIT_MAP: u64 = 259;

// === reader ===

/// Decodes one complete CBOR item; bytes after it are an error.
pub(super) fn decode(bytes: &[u8]) -> Result<Value, ProtocolError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.item(0)?;
    if r.pos != bytes.len() {
        return Err(ProtocolError::Invalid(format!(
            "{} bytes after the CBOR value",
            bytes.len() - r.pos
        )));
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The head of a CBOR item: major type and argument, or indefinite length.
enum Head {
    Arg(u8, u64),
    Indefinite,
}

fn truncated() -> ProtocolError {
    ProtocolError::Truncated("CBOR value ends early".to_owned())
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.remaining() < n {
            return Err(truncated());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, ProtocolError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn head(&mut self) -> Result<(u8, Head), ProtocolError> {
        let ib = self.byte()?;
        let major = ib >> 5;
        let info = ib & 0x1f;
        let head = match info {
            0..=23 => Head::Arg(info, u64::from(info)),
            24 => Head::Arg(info, self.be(1)?),
            25 => Head::Arg(info, self.be(2)?),
            26 => Head::Arg(info, self.be(4)?),
            27 => Head::Arg(info, self.be(8)?),
            31 => Head::Indefinite,
            _ => {
                return Err(ProtocolError::Invalid(format!(
                    "reserved CBOR additional info {info}"
                )))
            }
        };
        Ok((major, head))
    }

    fn len(&self, n: u64) -> Result<usize, ProtocolError> {
        usize::try_from(n).map_err(|_| truncated())
    }

    /// Whether the next byte is the "break" that ends an indefinite-length item.
    fn at_break(&mut self) -> Result<bool, ProtocolError> {
        if self.remaining() == 0 {
            return Err(truncated());
        }
        if self.buf[self.pos] == 0xff {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// The bytes of a (possibly chunked) byte or text string of major type `major`.
    fn string_bytes(&mut self, major: u8, head: Head) -> Result<Vec<u8>, ProtocolError> {
        match head {
            Head::Arg(_, n) => {
                let n = self.len(n)?;
                Ok(self.take(n)?.to_vec())
            }
            Head::Indefinite => {
                let mut out = Vec::new();
                while !self.at_break()? {
                    match self.head()? {
                        (m, Head::Arg(_, n)) if m == major => {
                            let n = self.len(n)?;
                            out.extend_from_slice(self.take(n)?);
                        }
                        _ => {
                            return Err(ProtocolError::Invalid(
                                "bad chunk in an indefinite-length CBOR string".to_owned(),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::Invalid(format!(
                "CBOR nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let (major, head) = self.head()?;
        match (major, head) {
            (0, Head::Arg(_, n)) => Ok(Value::Integer(Integer::from(n))),
            (1, Head::Arg(_, n)) => {
                let v = -1 - i128::from(n);
                Integer::try_from(v)
                    .map(Value::Integer)
                    .map_err(|_| ProtocolError::Invalid("CBOR integer out of range".to_owned()))
            }
            (2, head) => Ok(Value::Bytes(self.string_bytes(2, head)?)),
            (3, head) => {
                let bytes = self.string_bytes(3, head)?;
                String::from_utf8(bytes)
                    .map(Value::Text)
                    .map_err(|_| ProtocolError::Invalid("CBOR text is not UTF-8".to_owned()))
            }
            (4, Head::Arg(_, n)) => {
                let n = self.len(n)?;
                // Every item takes at least one byte: never reserve more than could follow.
                let mut items = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            (4, Head::Indefinite) => {
                let mut items = Vec::new();
                while !self.at_break()? {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            (5, Head::Arg(_, n)) => {
                let n = self.len(n)?;
                let mut entries = Vec::with_capacity(n.min(self.remaining() / 2));
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            (5, Head::Indefinite) => {
                let mut entries = Vec::new();
                while !self.at_break()? {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            (6, Head::Arg(_, tag)) => {
                let inner = self.item(depth + 1)?;
                Ok(normalize_tag(tag, inner))
            }
            (7, Head::Arg(info, arg)) => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 | 23 => Ok(Value::Null),
                25 => Ok(number_value(f16_to_f64(arg as u16))),
                26 => Ok(number_value(f64::from(f32::from_bits(arg as u32)))),
                27 => Ok(number_value(f64::from_bits(arg))),
                _ => Err(ProtocolError::Invalid(format!(
                    "unsupported CBOR simple value {arg}"
                ))),
            },
            (7, Head::Indefinite) => {
                Err(ProtocolError::Invalid("unexpected CBOR break".to_owned()))
            }
            _ => Err(ProtocolError::Invalid(
                "indefinite length on a CBOR integer or tag".to_owned(),
            )),
        }
    }
}

fn normalize_tag(tag: u64, inner: Value) -> Value {
    match (tag, inner) {
        (TAG_TYPED_UINT8, Value::Bytes(b)) => Value::Bytes(b),
        (TAG_EXPLICIT_MAP, Value::Map(m)) => Value::Map(m),
        (2 | 3, Value::Bytes(b)) => bignum_from_tag(tag, b),
        (tag, inner) => Value::Tag(tag, Box::new(inner)),
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    if h & 0x8000 != 0 {
        -v
    } else {
        v
    }
}

// === writer ===

/// Writes CBOR heads and values laid out as cbor-x lays them out.
pub(super) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer { out: Vec::new() }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }

    fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        if arg < 24 {
            self.out.push(m | arg as u8);
        } else if arg <= 0xff {
            self.out.extend_from_slice(&[m | 24, arg as u8]);
        } else if arg <= 0xffff {
            self.out.push(m | 25);
            self.out.extend_from_slice(&(arg as u16).to_be_bytes());
        } else if arg <= 0xffff_ffff {
            self.out.push(m | 26);
            self.out.extend_from_slice(&(arg as u32).to_be_bytes());
        } else {
            self.out.push(m | 27);
            self.out.extend_from_slice(&arg.to_be_bytes());
        }
    }

    /// The head of a plain JS object: cbor-x always writes a 16-bit length.
    pub(super) fn object_header(&mut self, len: usize) {
        if let Ok(n) = u16::try_from(len) {
            self.out.push(0xb9);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            self.out.push(0xba);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub(super) fn text(&mut self, s: &str) {
        self.head(3, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(super) fn null(&mut self) {
        self.out.push(0xf6);
    }

    pub(super) fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xf5 } else { 0xf4 });
    }

    /// A JS bigint: cbor-x always writes 64 bits, which is why the client decodes a bigint.
    pub(super) fn bigint_u64(&mut self, v: u64) {
        self.out.push(0x1b);
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A JS number.
    pub(super) fn number(&mut self, f: f64) {
        if f.trunc() == f && (0.0..4_294_967_296.0).contains(&f) {
            self.head(0, f as u64);
        } else if f.trunc() == f && (-4_294_967_296.0..0.0).contains(&f) {
            self.head(1, (-1.0 - f) as u64);
        } else {
            self.out.push(0xfb);
            let bits = if f.is_nan() {
                f64::NAN.to_bits()
            } else {
                f.to_bits()
            };
            self.out.extend_from_slice(&bits.to_be_bytes());
        }
    }

    /// An integer of the value model: a JS number when safe, else a bigint.
    fn integer(&mut self, n: i128) {
        if is_safe_integer(n) {
            // Exact: |n| < 2^53.
            self.number(n as f64);
        } else if let Ok(u) = u64::try_from(n) {
            self.bigint_u64(u);
        } else {
            // Integer's range ends at -2^64, so -1 - n fits u64.
            self.out.push(0x3b);
            self.out.extend_from_slice(&((-1 - n) as u64).to_be_bytes());
        }
    }

    /// A value already in compat form.
    fn compat_value(&mut self, v: &Value) {
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(*b),
            Value::Integer(i) => self.integer(i128::from(*i)),
            Value::Float(f) => self.number(*f),
            Value::Text(s) => self.text(s),
            Value::Bytes(b) => {
                self.head(2, b.len() as u64);
                self.out.extend_from_slice(b);
            }
            Value::Array(items) => {
                self.head(4, items.len() as u64);
                for x in items {
                    self.compat_value(x);
                }
            }
            Value::Map(entries) => {
                if entries.iter().all(|(k, _)| matches!(k, Value::Text(_))) {
                    self.object_header(entries.len());
                } else {
                    self.head(6, TAG_EXPLICIT_MAP);
                    self.head(5, entries.len() as u64);
                }
                for (k, x) in entries {
                    self.compat_value(k);
                    self.compat_value(x);
                }
            }
            Value::Tag(tag, inner) => {
                self.head(6, *tag);
                self.compat_value(inner);
            }
            _ => self.null(),
        }
    }

    /// A value of the model, written in compat form.
    pub(super) fn value(&mut self, v: &Value) -> Result<(), ProtocolError> {
        let c = to_compat(v)?;
        self.compat_value(&c);
        Ok(())
    }
}

/// A value as compat CBOR: what RivetKit's `encodeCborCompat` produces (BARE `data` fields).
pub(super) fn encode_value(v: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut w = Writer::new();
    w.value(v)?;
    Ok(w.finish())
}

/// Compat CBOR back to a value (`decodeCborCompat`); an empty field is null, as rivetkit-core
/// treats an empty output.
pub(super) fn decode_value(bytes: &[u8]) -> Result<Value, ProtocolError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    super::value::revive(decode(bytes)?)
}
