//! Ids in the engine's format: one version byte, 16 random bytes and a big-endian `u16`
//! datacenter label, written as 30 lowercase base36 digits, least significant first, of the
//! 19 bytes read as a little-endian number. Clients treat ids as opaque, but matching the
//! format keeps ids a user copies between Rivet and Rivulet looking alike, and leaves room
//! for a datacenter label once several regions exist.

/// Length of an id string.
pub const ID_LEN: usize = 30;
const VERSION: u8 = 1;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new random id for the given datacenter label.
pub fn generate(label: u16) -> String {
    let mut bytes = [0u8; 19];
    bytes[0] = VERSION;
    bytes[1..17].copy_from_slice(&rand::random::<[u8; 16]>());
    bytes[17..19].copy_from_slice(&label.to_be_bytes());
    encode(&bytes)
}

fn encode(bytes: &[u8; 19]) -> String {
    // Repeated division of the little-endian number by 36.
    let mut n = *bytes;
    let mut out = String::with_capacity(ID_LEN);
    for _ in 0..ID_LEN {
        let mut rem: u32 = 0;
        for byte in n.iter_mut().rev() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(char::from(ALPHABET[rem as usize]));
    }
    out
}

/// Parses an id, returning its datacenter label; `None` if it is not a well-formed id.
pub fn parse(id: &str) -> Option<u16> {
    if id.len() != ID_LEN {
        return None;
    }
    let mut n = [0u8; 19];
    for ch in id.bytes().rev() {
        let digit = ALPHABET.iter().position(|&a| a == ch)? as u32;
        let mut carry = digit;
        for byte in n.iter_mut() {
            let cur = u32::from(*byte) * 36 + carry;
            *byte = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    if n[0] != VERSION {
        return None;
    }
    Some(u16::from_be_bytes([n[17], n[18]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        for label in [0u16, 1, 2, 0xffff] {
            let id = generate(label);
            assert_eq!(id.len(), ID_LEN);
            assert_eq!(parse(&id), Some(label), "{id}");
        }
    }

    #[test]
    fn engine_ids_parse() {
        // An id the real engine handed out (shared/observed wire trace), datacenter label 1.
        assert_eq!(parse("9ahahfri3lowxr7gf8zu9ppqstal00"), Some(1));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse("actor-0001"), None);
        assert_eq!(parse(&"z".repeat(ID_LEN)), None);
        assert_eq!(parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"), None);
    }
}
