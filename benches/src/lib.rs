//! Criterion benches of Rigger's hot paths live in `benches/`; this library holds their shared
//! inputs. Run them with `cargo bench -p rigger-benches`.

/// A model-like stream of text pieces: `n` pieces of 1-6 characters with spaces, deterministic.
pub fn token_pieces(n: usize) -> Vec<String> {
    const WORDS: [&str; 8] = [
        "the", " keeper", " lit", " a", " lamp", ",", " while", " waves",
    ];
    (0..n).map(|i| WORDS[i % WORDS.len()].to_owned()).collect()
}
