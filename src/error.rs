//! The one error type of wgnn.
//!
//! Every variant names the operation that failed and the values that made it fail, so a
//! message read alone in a log says what to change: `conv2d: input has 3 channels, kernel
//! expects 1 (input [32, 28, 28, 3], kernel [3, 3, 1, 32])`.

use std::time::Duration;

/// `Result` with [`Error`] as its error type; every fallible public function returns it.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in wgnn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Tensor shapes that do not fit together, or a shape that cannot be used.
    #[error("{op}: {msg}")]
    Shape {
        /// The operation, e.g. `matmul`.
        op: &'static str,
        /// What is wrong, with the shapes.
        msg: String,
    },
    /// An argument outside its domain (a rate outside [0, 1], a label out of range...).
    #[error("{op}: {msg}")]
    Argument {
        /// The operation.
        op: &'static str,
        /// What is wrong, with the value.
        msg: String,
    },
    /// A size over one of the device's limits.
    #[error("{op}: {what} needs {requested}, over the device's limit of {limit}")]
    Limit {
        /// The operation.
        op: &'static str,
        /// Which limit (e.g. `storage binding bytes`).
        what: String,
        /// What was asked for.
        requested: u64,
        /// The device's limit.
        limit: u64,
    },
    /// An allocation would take the device memory wgnn holds past the budget set with
    /// [`crate::Gpu::set_memory_budget`], or the device ran out of memory.
    #[error(
        "{op}: out of device memory: {requested} more bytes with {in_use} in use would exceed the budget of {budget}"
    )]
    OutOfMemory {
        /// The operation.
        op: &'static str,
        /// Bytes asked for.
        requested: u64,
        /// The budget in bytes.
        budget: u64,
        /// Bytes held when asked.
        in_use: u64,
    },
    /// No adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The device reported an error (validation, out of memory, internal).
    #[error("{op}: GPU error: {msg}")]
    Gpu {
        /// The operation.
        op: &'static str,
        /// wgpu's message.
        msg: String,
    },
    /// The device was lost; every later operation fails with this too.
    #[error("{op}: device lost: {reason}")]
    DeviceLost {
        /// The operation.
        op: &'static str,
        /// Why, as wgpu reported it.
        reason: String,
    },
    /// A wait for the device took longer than allowed.
    #[error("{op}: the device did not finish within {waited:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// How long wgnn waited.
        waited: Duration,
    },
    /// Training produced a non-finite loss or gradient; the weights are those of the step
    /// before.
    #[error(
        "fit: non-finite {what} at epoch {epoch}, step {step}; the weights of the step before are kept"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step: usize,
        /// `loss`, or the parameter whose gradient was not finite.
        what: String,
    },
    /// A malformed or hostile data file.
    #[error("{path}: {msg}")]
    Data {
        /// The file (or `<bytes>` for in-memory input).
        path: String,
        /// What is wrong, with the byte offset and field where known.
        msg: String,
    },
    /// A broken internal invariant of wgnn: a bug in wgnn, not in the caller's use of it.
    #[error("wgnn internal error in {op}: {msg}; please report this as a bug")]
    Internal {
        /// The public call during which the invariant broke.
        op: &'static str,
        /// The invariant that broke.
        msg: String,
    },
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub(crate) fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Argument {
            op,
            msg: msg.into(),
        }
    }
    /// A broken invariant of wgnn itself (its message asks for a bug report).
    pub(crate) fn internal(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Internal {
            op,
            msg: msg.into(),
        }
    }
}
