//! Why a piece of the worker's work stopped: [`WorkError`]. It keeps its cause (the store's
//! error with the SDK's under it), says whether trying again later may succeed
//! ([`WorkError::is_transient`]: the stream or the tick then retries), and is logged once,
//! with its whole chain, where the work gives up ([`WorkError::chain`]).

use platform::error::Cause;
use platform::store::StoreError;
use platform::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The store failed: busy or unreachable (transient), or a fault.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shared code that answers in the API's terms refused or failed (saving a Klip's
    /// value, a data source's rules): its answer, as a request would have received it.
    #[error(transparent)]
    Refused(ApiError),
    /// A fault of the worker's own, with its cause.
    #[error(transparent)]
    Fault(Cause),
}

impl From<ApiError> for WorkError {
    fn from(error: ApiError) -> Self {
        WorkError::Refused(error)
    }
}

impl WorkError {
    /// A fault described by `context`.
    pub fn fault(context: impl std::fmt::Display) -> WorkError {
        WorkError::Fault(Cause::new(context.to_string()))
    }

    /// Whether trying again later may succeed: the database or the file storage was busy
    /// or unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            WorkError::Store(e) => e.is_transient(),
            WorkError::Refused(e) => matches!(e, ApiError::Unavailable(_)),
            WorkError::Fault(_) => false,
        }
    }

    /// The error and every cause under it, outermost first, joined by ": " (what the log
    /// shows, once, where the work gives up).
    pub fn chain(&self) -> String {
        if let WorkError::Refused(ApiError::Internal(cause)) | WorkError::Fault(cause) = self {
            return cause.chain();
        }
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(error) = next {
            text.push_str(": ");
            text.push_str(&error.to_string());
            next = error.source();
        }
        text
    }
}
