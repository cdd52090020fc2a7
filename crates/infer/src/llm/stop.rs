//! Incremental detokenisation with stop sequences.
//!
//! Token pieces are bytes that may split a UTF-8 character, and a stop sequence may span several
//! tokens; text is released only when it is valid UTF-8 and cannot be the start of a stop sequence.

/// Accumulates token bytes and releases text that is final.
#[derive(Debug, Default)]
pub struct StopBuffer {
    stops: Vec<String>,
    pending: Vec<u8>,
    held: String,
}

/// Result of pushing one token piece.
#[derive(Debug, PartialEq)]
pub enum Push {
    /// Text that is final (may be empty).
    Emit(String),
    /// A stop sequence matched; the text before it is final and generation ends.
    Stop(String),
}

impl StopBuffer {
    /// A buffer that watches for `stops`.
    pub fn new(stops: Vec<String>) -> Self {
        StopBuffer { stops, pending: Vec::new(), held: String::new() }
    }

    /// Adds the bytes of one token.
    pub fn push(&mut self, piece: &[u8]) -> Push {
        self.pending.extend_from_slice(piece);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => {
                // An invalid sequence that is not just an incomplete tail can never become valid:
                // release it lossily rather than holding it forever.
                if e.error_len().is_some() {
                    self.pending.len()
                } else {
                    e.valid_up_to()
                }
            }
        };
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        self.held.push_str(&text);
        if self.stops.is_empty() {
            return Push::Emit(std::mem::take(&mut self.held));
        }
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let before = self.held[..pos].to_string();
            // Everything after the match is cut, including bytes of a character not yet complete:
            // `flush` must not release them (as U+FFFD) after the stop.
            self.held.clear();
            self.pending.clear();
            return Push::Stop(before);
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let mut keep = 0;
        for s in &self.stops {
            for k in (1..s.len().min(self.held.len() + 1)).rev() {
                if self.held.is_char_boundary(self.held.len() - k)
                    && s.is_char_boundary(k)
                    && self.held.ends_with(&s[..k])
                {
                    keep = keep.max(k);
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Push::Emit(out)
    }

    /// Releases whatever is still held (end of generation).
    pub fn flush(&mut self) -> String {
        let mut s = std::mem::take(&mut self.held);
        s.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.pending)));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_plain_text_at_once() {
        let mut b = StopBuffer::new(vec![]);
        assert_eq!(b.push(b"hello"), Push::Emit("hello".into()));
    }

    #[test]
    fn holds_split_utf8() {
        let mut b = StopBuffer::new(vec![]);
        let e = "é".as_bytes();
        assert_eq!(b.push(&e[..1]), Push::Emit(String::new()));
        assert_eq!(b.push(&e[1..]), Push::Emit("é".into()));
    }

    #[test]
    fn stop_across_tokens() {
        let mut b = StopBuffer::new(vec!["\nQ:".into()]);
        assert_eq!(b.push(b"19"), Push::Emit("19".into()));
        assert_eq!(b.push(b"\n"), Push::Emit(String::new()));
        assert_eq!(b.push(b"Q"), Push::Emit(String::new()));
        assert_eq!(b.push(b": next"), Push::Stop(String::new()));
    }

    #[test]
    fn a_stop_drops_the_incomplete_character_after_it() {
        let mut b = StopBuffer::new(vec!["END".into()]);
        let e = "é".as_bytes();
        // The stop and the first byte of a two-byte character arrive in one piece.
        let mut piece = b"ok END".to_vec();
        piece.push(e[0]);
        assert_eq!(b.push(&piece), Push::Stop("ok ".into()));
        assert_eq!(b.flush(), "", "nothing after the stop, not even U+FFFD");
    }

    #[test]
    fn false_alarm_is_released() {
        let mut b = StopBuffer::new(vec!["END".into()]);
        assert_eq!(b.push(b"EN"), Push::Emit(String::new()));
        assert_eq!(b.push(b"d"), Push::Emit("ENd".into()));
        assert_eq!(b.flush(), "");
    }
}
