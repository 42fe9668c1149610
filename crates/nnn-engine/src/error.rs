//! Typed errors of the engine: every bad input is one of these, never a panic.

use std::fmt;

/// Why an engine call refused its input or stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// A flat buffer whose length is not a multiple of the dimension, or a zero dimension.
    Shape { what: &'static str, len: usize, dim: usize },
    /// Two sets of vectors (or a vector and a set) of different dimensions.
    DimensionMismatch { what: &'static str, expected: usize, found: usize },
    /// A set that must hold at least one row holds none.
    Empty { what: &'static str },
    /// `k` is zero or larger than the rows it selects from.
    KOutOfRange { k: usize, max: usize, what: &'static str },
    /// A NaN or infinite component in a row.
    NonFinite { what: &'static str, row: usize },
    /// A scalar parameter outside its domain (alpha, lambda, thread count).
    InvalidParameter { name: &'static str, value: String },
    /// The caller's control callback asked to stop.
    Cancelled,
    /// Faiss refused or failed an operation (`what`), with its own message.
    Faiss { what: &'static str, message: String },
    /// A backend (`what`, e.g. "CUDA") cannot run on this machine, and why.
    Unavailable { what: &'static str, why: String },
    /// A GPU operation (`what`) failed, with the driver's or library's message.
    Device { what: &'static str, message: String },
    /// A worker thread panicked; the message is the panic payload.
    WorkerPanic(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape { what, len, dim } => {
                write!(f, "{what}: {len} values do not form rows of dimension {dim}")
            }
            Self::DimensionMismatch { what, expected, found } => {
                write!(f, "{what}: dimension {found} does not match the expected {expected}")
            }
            Self::Empty { what } => write!(f, "{what}: the set is empty"),
            Self::KOutOfRange { k, max, what } => {
                write!(f, "k = {k} is out of range 1..={max} ({what})")
            }
            Self::NonFinite { what, row } => {
                write!(f, "{what}: row {row} has a NaN or infinite component")
            }
            Self::InvalidParameter { name, value } => write!(f, "invalid {name}: {value}"),
            Self::Cancelled => write!(f, "cancelled"),
            Self::Faiss { what, message } => write!(f, "Faiss {what} failed: {message}"),
            Self::Unavailable { what, why } => write!(f, "{what} is not available: {why}"),
            Self::Device { what, message } => write!(f, "GPU {what} failed: {message}"),
            Self::WorkerPanic(msg) => write!(f, "a worker thread panicked: {msg}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Engine result.
pub type Result<T> = std::result::Result<T, EngineError>;
