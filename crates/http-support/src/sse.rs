//! A server-sent events parser (the WHATWG `text/event-stream` rules) that is linear in the
//! body's size and bounded in memory: each byte is scanned for a line end once, and a line or
//! an event's data longer than the limit is an error instead of a buffer that grows with
//! whatever the server sends.

use std::collections::VecDeque;

/// One server-sent event. `event` is empty when the server named none (SSE's default
/// "message"); comment lines (`: keepalive`) never become events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Why a body is not a usable event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseError {
    /// A line (or the data of one event) passed the limit, in bytes.
    TooLong(usize),
    NotUtf8,
}

/// Feeds on the body's chunks, yields complete events.
#[derive(Debug)]
pub(crate) struct SseParser {
    max: usize,
    /// Bytes not yet consumed: at most one partial line.
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no line end (so nothing is scanned twice).
    scanned: usize,
    /// The last line ended with `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    at_start: bool,
    event: String,
    data: String,
    /// A `data` field was seen (the buffer may still be empty: `data:` alone).
    has_data: bool,
}

impl SseParser {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            scanned: 0,
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
        }
    }

    /// Takes the next chunk of the body; complete events go into `out`.
    pub(crate) fn push(
        &mut self,
        mut chunk: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> Result<(), SseError> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start {
            // A byte-order mark may open the stream; decide once three bytes are in.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buf.len() >= BOM.len() {
                self.at_start = false;
                if self.buf.starts_with(BOM) {
                    self.buf.drain(..BOM.len());
                    self.scanned = self.scanned.saturating_sub(BOM.len());
                }
            } else if BOM.starts_with(&self.buf) {
                return Ok(());
            } else {
                self.at_start = false;
            }
        }
        let mut line_start = 0;
        let mut i = self.scanned;
        while let Some(offset) = self.buf[i..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let end = i + offset;
            let next = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    None => {
                        self.after_cr = true;
                        end + 1
                    }
                }
            } else {
                end + 1
            };
            let line = std::mem::take(&mut self.buf);
            let result = self.line(&line[line_start..end], out);
            self.buf = line;
            result?;
            line_start = next;
            i = next;
        }
        self.buf.drain(..line_start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.max {
            return Err(SseError::TooLong(self.max));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut VecDeque<SseEvent>) -> Result<(), SseError> {
        if line.len() > self.max {
            return Err(SseError::TooLong(self.max));
        }
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let mut data = std::mem::take(&mut self.data);
            if std::mem::take(&mut self.has_data) {
                data.pop(); // the `\n` after the last data line
                out.push_back(SseEvent {
                    event: if event == "message" {
                        String::new()
                    } else {
                        event
                    },
                    data,
                });
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // a comment: keep-alive
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() >= self.max {
                    return Err(SseError::TooLong(self.max));
                }
                self.has_data = true;
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id` and `retry` are for reconnecting clients; a generation is never resumed.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut parser = SseParser::new(1024);
        let mut out = VecDeque::new();
        for chunk in chunks {
            parser.push(chunk, &mut out)?;
        }
        Ok(out.into_iter().collect())
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_split_anywhere_and_every_line_ending() {
        let body = b"\xEF\xBB\xBF: ping\r\nevent: delta\ndata: a\r\ndata:b\r\rdata: {\"x\": 1}\n\nevent: message\ndata\n\n";
        let whole = parse(&[body]).unwrap();
        assert_eq!(
            whole,
            [ev("delta", "a\nb"), ev("", "{\"x\": 1}"), ev("", "")]
        );
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(parse(&[a, b]).unwrap(), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(parse(&bytes).unwrap(), whole);
    }

    #[test]
    fn comments_and_events_without_data_yield_nothing() {
        assert_eq!(parse(&[b": ping\n\nevent: x\n\nid: 3\n\n"]).unwrap(), []);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert_eq!(parse(&[b"data: partial\n"]).unwrap(), []);
    }

    #[test]
    fn a_long_line_without_a_newline_is_refused_as_it_grows() {
        let mut parser = SseParser::new(1024);
        let mut out = VecDeque::new();
        parser.push(b"data: ", &mut out).unwrap();
        let chunk = [b'a'; 512];
        let error = (0..10)
            .find_map(|_| parser.push(&chunk, &mut out).err())
            .expect("refused within a few chunks");
        assert_eq!(error, SseError::TooLong(1024));
    }

    #[test]
    fn data_spread_over_many_short_lines_is_capped_too() {
        let body = "data: 0123456789\n".repeat(200);
        assert_eq!(
            parse(&[body.as_bytes()]).unwrap_err(),
            SseError::TooLong(1024)
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            parse(&[b"data: \xFF\xFE\n\n"]).unwrap_err(),
            SseError::NotUtf8
        );
    }
}
