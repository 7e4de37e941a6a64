//! Reading a server-sent event stream for the event names only: a runner's stream carries
//! `ping` and `stopping` with empty data, and nothing else matters to the gateway.

/// Longest event block kept while waiting for its end; a runner's events are a few bytes, so
/// anything longer is not a runner's stream.
const MAX_BLOCK: usize = 64 * 1024;

/// Splits a byte stream into event names.
#[derive(Default)]
pub(crate) struct SseReader {
    buf: Vec<u8>,
}

impl SseReader {
    /// Adds bytes; returns the names of the events they completed (`message` when an event
    /// has data but no name), or `Err` if a block grew past the bound.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ()> {
        self.buf.extend_from_slice(bytes);
        let mut names = Vec::new();
        while let Some((end, sep)) = block_end(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..end + sep).collect();
            if let Some(name) = parse_block(&block[..end]) {
                names.push(name);
            }
        }
        if self.buf.len() > MAX_BLOCK {
            return Err(());
        }
        Ok(names)
    }
}

/// The end of the first complete block (a blank line) and the separator's length.
fn block_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\n' && buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
            return Some((i, 3));
        }
        if buf[i] == b'\r' && buf[i + 1] == b'\r' {
            return Some((i, 2));
        }
        i += 1;
    }
    None
}

fn parse_block(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let mut name = None;
    let mut has_data = false;
    for line in text.split(['\n', '\r']) {
        if line.starts_with(':') {
            continue; // a comment (keep-alive)
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => has_data = true,
            _ => {}
        }
    }
    name.or_else(|| has_data.then(|| "message".to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut r = SseReader::default();
        assert_eq!(
            r.push(b"event: ping\ndata:\n").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(r.push(b"\nevent: pi").unwrap(), vec!["ping"]);
        assert_eq!(
            r.push(b"ng\r\ndata:\r\n\r\n: keep-alive\n\nevent:stopping\ndata:\n\n")
                .unwrap(),
            vec!["ping", "stopping"]
        );
        assert_eq!(r.push(b"data: x\n\n").unwrap(), vec!["message"]);
        let mut r = SseReader::default();
        assert!(r.push(&vec![b'a'; MAX_BLOCK + 1]).is_err());
    }
}
