//! Stop sequences over a stream of text pieces, for engines that see text token by token.

/// What to do after a piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopStep {
    /// Emit this text (possibly empty: part of it may be a stop sequence in the making).
    Emit(String),
    /// A stop sequence matched: emit this text, which ends just before it, and stop.
    Stop(String),
}

/// Finds stop sequences across piece boundaries without emitting any part of them. Text that
/// could still become a stop sequence is held back until the next piece decides.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, piece: &str) -> StopStep {
        if self.stops.is_empty() {
            return StopStep::Emit(piece.to_owned());
        }
        self.pending.push_str(piece);
        let first_match = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_match {
            let text = self.pending[..at].to_owned();
            self.pending.clear();
            return StopStep::Stop(text);
        }
        let keep = self.held_back_len();
        let emit_to = self.pending.len() - keep;
        let text = self.pending[..emit_to].to_owned();
        self.pending.drain(..emit_to);
        StopStep::Emit(text)
    }

    /// The text still held back, when generation ends without a match.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some stop sequence.
    fn held_back_len(&self) -> usize {
        self.pending
            .char_indices()
            .map(|(i, _)| &self.pending[i..])
            .find(|suffix| self.stops.iter().any(|s| s.starts_with(suffix)))
            .map_or(0, str::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopStep::Emit(t) => out.push_str(&t),
                StopStep::Stop(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn matches_across_pieces_and_never_emits_the_stop() {
        assert_eq!(
            run(&["END"], &["abc E", "N", "D tail"]),
            ("abc ".into(), true)
        );
        assert_eq!(run(&["xy"], &["axyb"]), ("a".into(), true));
        assert_eq!(run(&["b", "abc"], &["zab"]), ("za".into(), true));
    }

    #[test]
    fn releases_held_text_when_no_stop_follows() {
        assert_eq!(run(&["END"], &["abc E", "x"]), ("abc Ex".into(), false));
        assert_eq!(run(&["END"], &["abc EN"]), ("abc EN".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["é!"], &["caf", "é", "s"]), ("cafés".into(), false));
    }
}
