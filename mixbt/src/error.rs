//! The crate's error type: every failure names the file or the value that caused it.

use std::path::{Path, PathBuf};

/// Errors raised by mixbt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what was expected.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A field of a configuration (`backbone.width`, `projector.sizes`, …) has a value the model
    /// cannot be built with.
    #[error("invalid configuration: `{field}` {msg}")]
    Field { field: String, msg: String },
    /// A batch column has zero variance, so the Barlow Twins standardisation would divide by zero.
    #[error("{0}")]
    ZeroVariance(String),
    /// A loss became NaN or infinite.
    #[error("{0}")]
    NonFinite(String),
    /// A checkpoint does not match the model it is loaded into.
    #[error("{0}")]
    Checkpoint(String),
    /// Hub or network failure.
    #[error("{0}")]
    Hub(String),
    /// Anything else, with context.
    #[error("{0}")]
    Msg(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    /// An invalid value of configuration field `field`.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Field { field: field.into(), msg: msg.into() }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Msg(format!("json: {e}"))
    }
}

/// Return early with an [`Error::Config`].
#[macro_export]
macro_rules! config_bail {
    ($($arg:tt)*) => { return Err($crate::Error::Config(format!($($arg)*))) };
}
