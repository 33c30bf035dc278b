//! The engine's one error type. Frontends map it into their own (the Candle adapter into
//! `InferenceError`); `NotCovered` is the one a frontend usually answers by running the model on
//! other code instead.

use std::fmt;

/// Why the engine cannot load or run a model.
#[derive(Debug)]
pub enum Error {
    /// A valid model the engine does not run: an architecture, a weight format or a layer kind
    /// it lacks. Another implementation may run it.
    NotCovered(String),
    /// The file is not a model the engine can read: metadata or tensors missing, shapes that
    /// disagree, bytes that are not valid GGUF.
    Malformed(String),
    /// The caller asked for something the model cannot do (no tokens, a token outside the
    /// vocabulary, a position that does not follow the cache).
    InvalidInput(String),
    /// Reading the file failed.
    Io(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotCovered(why) => write!(f, "not covered by the CPU engine: {why}"),
            Error::Malformed(why) | Error::InvalidInput(why) => f.write_str(why),
            Error::Io(e) => write!(f, "cannot read the model: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// candle reads the GGUF file; what it refuses is a malformed file (its I/O errors stay I/O).
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        match e {
            candle_core::Error::Io(e) => Error::Io(e),
            e => Error::Malformed(e.to_string()),
        }
    }
}
