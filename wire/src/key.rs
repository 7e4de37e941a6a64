//! Actor keys. A key is a list of strings; the store, the API and the gateway all use one
//! canonical string form so (namespace, name, key) can be compared as a string:
//! the empty list is `/`; parts are joined by `/`; inside a part `\` becomes `\\`, `/`
//! becomes `\/` and an empty part is written `\0`. The form is injective, which the tests
//! check: two different keys never share a string.

/// Longest key part, in bytes.
pub const MAX_PART_BYTES: usize = 128;
/// Longest serialized key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// One part is longer than [`MAX_PART_BYTES`].
    #[error("key part {index} is {len} bytes, the limit is {MAX_PART_BYTES}")]
    PartTooLong {
        /// Index of the part.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The serialized key is longer than [`MAX_KEY_BYTES`].
    #[error("key is {len} bytes, the limit is {MAX_KEY_BYTES}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The string is not a key in canonical form.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
}

/// Serializes key parts to the canonical string, checking the limits.
pub fn serialize(parts: &[String]) -> Result<String, KeyError> {
    if parts.is_empty() {
        return Ok("/".to_string());
    }
    let mut out = String::new();
    for (index, part) in parts.iter().enumerate() {
        if part.len() > MAX_PART_BYTES {
            return Err(KeyError::PartTooLong {
                index,
                len: part.len(),
            });
        }
        if index > 0 {
            out.push('/');
        }
        if part.is_empty() {
            out.push_str("\\0");
            continue;
        }
        for ch in part.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                other => out.push(other),
            }
        }
    }
    if out.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: out.len() });
    }
    Ok(out)
}

/// Parses the canonical string back into key parts.
pub fn deserialize(key: &str) -> Result<Vec<String>, KeyError> {
    if key == "/" {
        return Ok(Vec::new());
    }
    if key.is_empty() {
        return Err(KeyError::Malformed("empty string"));
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut empty_marker = false;
    let mut chars = key.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some('\\') => current.push('\\'),
                Some('/') => current.push('/'),
                Some('0') if current.is_empty() && !empty_marker => empty_marker = true,
                Some(_) => return Err(KeyError::Malformed("unknown escape")),
                None => return Err(KeyError::Malformed("trailing backslash")),
            },
            '/' => {
                parts.push(finish_part(&mut current, &mut empty_marker)?);
            }
            other => {
                if empty_marker {
                    return Err(KeyError::Malformed("text after empty-part marker"));
                }
                current.push(other);
            }
        }
    }
    parts.push(finish_part(&mut current, &mut empty_marker)?);
    Ok(parts)
}

fn finish_part(current: &mut String, empty_marker: &mut bool) -> Result<String, KeyError> {
    if current.is_empty() && !*empty_marker {
        return Err(KeyError::Malformed("empty part without marker"));
    }
    *empty_marker = false;
    Ok(std::mem::take(current))
}

/// Parses the `rvt-key` query form: parts joined by `,`, the empty string being no parts.
pub fn from_query(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value.split(',').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roundtrip(parts: &[&str]) {
        let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let s = serialize(&owned).unwrap();
        assert_eq!(deserialize(&s).unwrap(), owned, "via {s:?}");
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(serialize(&[]).unwrap(), "/");
        assert_eq!(serialize(&["a".into(), "b".into()]).unwrap(), "a/b");
        assert_eq!(serialize(&["".into()]).unwrap(), "\\0");
        assert_eq!(serialize(&["a/b".into()]).unwrap(), "a\\/b");
        assert_eq!(serialize(&["a\\".into()]).unwrap(), "a\\\\");
    }

    #[test]
    fn roundtrips_and_is_injective() {
        let cases: &[&[&str]] = &[
            &[],
            &[""],
            &["", ""],
            &["/"],
            &["a", "b"],
            &["a/b"],
            &["\\0"],
            &["\\", "/"],
            &["0"],
            &["x", "", "y"],
        ];
        let mut seen = std::collections::HashSet::new();
        for case in cases {
            roundtrip(case);
            let owned: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            assert!(
                seen.insert(serialize(&owned).unwrap()),
                "collision for {case:?}"
            );
        }
    }

    #[test]
    fn limits_and_malformed() {
        let long = "x".repeat(MAX_PART_BYTES + 1);
        assert!(matches!(
            serialize(&[long]),
            Err(KeyError::PartTooLong { index: 0, .. })
        ));
        let many: Vec<String> = (0..10).map(|_| "y".repeat(120)).collect();
        assert!(matches!(serialize(&many), Err(KeyError::TooLong { .. })));
        assert!(deserialize("a\\").is_err());
        assert!(deserialize("a//b").is_err());
        assert!(deserialize("\\q").is_err());
        assert!(deserialize("").is_err());
    }

    #[test]
    fn query_form() {
        assert_eq!(from_query(""), Vec::<String>::new());
        assert_eq!(from_query("a,b"), vec!["a".to_string(), "b".to_string()]);
    }
}
