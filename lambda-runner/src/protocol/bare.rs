//! BARE primitives with the strictness of RivetKit's `@rivetkit/bare-ts` reader (canonical
//! varints, bools 0 or 1, UTF-8 strings, no trailing bytes), and the vbare version prefix.

use super::error::ProtocolError;

/// The client-protocol version we write, and the only one we read for server-to-client types.
pub(super) const VERSION: u16 = 4;

fn truncated(what: &str) -> ProtocolError {
    ProtocolError::Truncated(format!("BARE message ends inside {what}"))
}

/// Reads BARE fields from a byte slice.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads the `u16le` version prefix; `accepted` lists the versions this message has had
    /// with the same layout as v4.
    pub(super) fn versioned(buf: &'a [u8], accepted: &[u16]) -> Result<Reader<'a>, ProtocolError> {
        let [lo, hi, ..] = buf else {
            return Err(truncated("the version prefix"));
        };
        let version = u16::from_le_bytes([*lo, *hi]);
        if !accepted.contains(&version) {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        Ok(Reader { buf, pos: 2 })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() - self.pos < n {
            return Err(truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    /// A LEB128 `uint`, at most 10 bytes, in its shortest form.
    pub(super) fn uint(&mut self, what: &str) -> Result<u64, ProtocolError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            if i == 9 && b > 1 {
                return Err(ProtocolError::Invalid(format!(
                    "{what}: uint overflows 64 bits"
                )));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i > 0 && b == 0 {
                    return Err(ProtocolError::Invalid(format!(
                        "{what}: non-canonical uint"
                    )));
                }
                return Ok(value);
            }
        }
        Err(ProtocolError::Invalid(format!(
            "{what}: uint longer than 10 bytes"
        )))
    }

    pub(super) fn bool(&mut self, what: &str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(ProtocolError::Invalid(format!(
                "{what}: bool must be 0 or 1, got {b}"
            ))),
        }
    }

    /// `data`: a length-prefixed byte string.
    pub(super) fn data(&mut self, what: &str) -> Result<&'a [u8], ProtocolError> {
        let len = self.uint(what)?;
        let len = usize::try_from(len).map_err(|_| truncated(what))?;
        self.take(len, what)
    }

    pub(super) fn string(&mut self, what: &str) -> Result<String, ProtocolError> {
        let bytes = self.data(what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ProtocolError::Invalid(format!("{what}: string is not UTF-8")))
    }

    /// `optional<T>`: a presence byte, then `T`.
    pub(super) fn optional<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Option<T>, ProtocolError> {
        if self.bool(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails if bytes remain, as `decode*` in bare-ts does.
    pub(super) fn finish(self) -> Result<(), ProtocolError> {
        let rest = self.buf.len() - self.pos;
        if rest > 0 {
            return Err(ProtocolError::Invalid(format!(
                "{rest} bytes after the BARE message"
            )));
        }
        Ok(())
    }
}

/// Writes BARE fields after the version prefix.
pub(super) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(super) fn versioned() -> Self {
        Writer {
            out: VERSION.to_le_bytes().to_vec(),
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(super) fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    pub(super) fn bool(&mut self, b: bool) {
        self.out.push(u8::from(b));
    }

    pub(super) fn data(&mut self, bytes: &[u8]) {
        self.uint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    pub(super) fn string(&mut self, s: &str) {
        self.data(s.as_bytes());
    }
}
