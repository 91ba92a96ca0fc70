//! Streaming detokenisation: turns token bytes into UTF-8 text pieces, holding
//! back incomplete multi-byte sequences and any tail that could be the start of
//! a stop sequence, so stop strings never leak into the stream. It does not
//! decide when generation ends for other reasons (EOS, length).

/// Per-sequence text state.
pub struct TextStream {
    pending: Vec<u8>,
    held: String,
    stop: Vec<String>,
}

/// The outcome of pushing one token.
pub struct Pushed {
    /// Text that may be sent now.
    pub text: String,
    /// A stop sequence matched; `text` is everything before it.
    pub stopped: bool,
}

impl TextStream {
    /// A stream that watches for `stop` strings (empty strings are ignored).
    pub fn new(stop: &[String]) -> Self {
        Self {
            pending: Vec::new(),
            held: String::new(),
            stop: stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
        }
    }

    /// Add a token's bytes; returns the text that can be released.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.held.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    let s = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                    self.held.push_str(&s);
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        Some(n) => {
                            self.held.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
        // A complete stop sequence?
        let first = self.stop.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(pos) = first {
            let text = self.held[..pos].to_string();
            self.held.clear();
            return Pushed { text, stopped: true };
        }
        // Hold back the longest tail that is a prefix of some stop sequence.
        let mut keep_from = self.held.len();
        for (i, _) in self.held.char_indices() {
            let tail = &self.held[i..];
            if self.stop.iter().any(|s| s.starts_with(tail)) {
                keep_from = i;
                break;
            }
        }
        let text = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        Pushed { text, stopped: false }
    }

    /// Release whatever is held (generation ended without a stop match).
    pub fn flush(&mut self) -> String {
        let mut s = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            s.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::stream::*;

    #[test]
    fn holds_incomplete_utf8() {
        let mut t = TextStream::new(&[]);
        let e = "é".as_bytes();
        assert_eq!(t.push(&e[..1]).text, "");
        assert_eq!(t.push(&e[1..]).text, "é");
    }

    #[test]
    fn stop_sequences_do_not_leak() {
        let mut t = TextStream::new(&["END".to_string()]);
        assert_eq!(t.push(b"hello E").text, "hello ");
        assert_eq!(t.push(b"N").text, "");
        let p = t.push(b"D and more");
        assert!(p.stopped);
        assert_eq!(p.text, "");
        let mut t = TextStream::new(&["END".to_string()]);
        assert_eq!(t.push(b"EN").text, "");
        let p = t.push(b"x");
        assert_eq!(p.text, "ENx");
        assert!(!p.stopped);
    }
}
