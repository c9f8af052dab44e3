//! What the store answers when it cannot do what it was asked: [`StoreError`], which keeps
//! the cause it was given (the SDK's error, the decoding error) so that whoever finally
//! logs it logs the whole chain. It becomes an [`ApiError`] only at the edge, through the
//! one `From` below; the worker decides from it whether to retry.

use crate::error::{ApiError, Cause};
use domain::FieldError;

/// Any error, kept as the cause of another.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a read or write of the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database or the file storage throttled, timed out or could not be reached: the
    /// caller may retry (503). `message` names the service, for the client.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The change would make a stored record larger than the database allows (413); the
    /// message says which field to shorten.
    #[error("{0}")]
    TooLarge(String),
    /// A value the database cannot store, named by where it is in the request (400).
    #[error("{}: {}", .0.field, .0.message)]
    Unstorable(FieldError),
    /// A write whose condition failed, in the words of the caller that named it (409).
    #[error("{0}")]
    Conflict(String),
    /// A write made for a request that admission refused: the answer is thrown away (401).
    #[error("the request was not admitted as the caller it was run for")]
    NotAdmitted,
    /// Anything else (an item that does not decode, a request that could not be built, an
    /// answer the store did not expect): a fault, kept with its cause (500).
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// A fault described by `context`, caused by `source`.
    pub fn failed(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Failed {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A fault with no other cause than what `context` says.
    pub fn fault(context: impl Into<String>) -> StoreError {
        StoreError::Failed {
            context: context.into(),
            source: None,
        }
    }

    /// Whether trying again later may succeed (the service was busy or unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { message, .. } => ApiError::Unavailable(message),
            StoreError::TooLarge(message) => ApiError::PayloadTooLarge(message),
            StoreError::Unstorable(field) => ApiError::validation(vec![field]),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::NotAdmitted => ApiError::Unauthorized(StoreError::NotAdmitted.to_string()),
            failed @ StoreError::Failed { .. } => ApiError::Internal(Cause::from_error(failed)),
        }
    }
}

impl From<crate::held::NotAdmitted> for StoreError {
    fn from(why: crate::held::NotAdmitted) -> Self {
        match why {
            crate::held::NotAdmitted::Speculative => {
                StoreError::fault("a speculative read tried to write to the database")
            }
            crate::held::NotAdmitted::Refused => StoreError::NotAdmitted,
        }
    }
}

/// A store call's future as an API call's (its error an [`ApiError`]), to be joined with
/// other work of a handler (`tokio::try_join!` needs one error type).
pub trait OrApiError<T>: std::future::Future<Output = Result<T, StoreError>> + Sized {
    fn api(self) -> impl std::future::Future<Output = Result<T, ApiError>> + Send
    where
        Self: Send,
        T: Send,
    {
        async { Ok(self.await?) }
    }
}

impl<T, F: std::future::Future<Output = Result<T, StoreError>>> OrApiError<T> for F {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_keeps_its_cause_to_the_edge_and_the_log_shows_the_whole_chain() {
        let decoding = serde_json::from_str::<u8>("300").unwrap_err();
        let store = StoreError::failed("decoding item", decoding);
        assert!(!store.is_transient());
        let api = ApiError::from(store);
        assert_eq!(api.status().as_u16(), 500);
        let ApiError::Internal(cause) = &api else {
            panic!("not a 500: {api:?}");
        };
        let chain = cause.chain();
        assert!(chain.starts_with("decoding item: "), "{chain}");
        assert!(chain.contains("expected u8"), "{chain}");
        // The client is shown none of it.
        let body = api.body(Some("req-1")).to_string();
        assert!(!body.contains("decoding"), "{body}");
    }

    #[test]
    fn each_store_error_becomes_the_api_error_it_always_was() {
        let cases = [
            (
                StoreError::Unavailable {
                    message: "the database is busy; retry shortly".into(),
                    source: None,
                },
                503,
                "service_unavailable",
            ),
            (
                StoreError::TooLarge("too big".into()),
                413,
                "payload_too_large",
            ),
            (
                StoreError::Unstorable(FieldError::new("layout.w", "numbers must be...")),
                400,
                "validation_failed",
            ),
            (StoreError::Conflict("slug taken".into()), 409, "conflict"),
            (StoreError::NotAdmitted, 401, "unauthorized"),
            (StoreError::fault("bug"), 500, "internal_error"),
        ];
        for (store, status, code) in cases {
            let transient = store.is_transient();
            let api = ApiError::from(store);
            assert_eq!((api.status().as_u16(), api.code()), (status, code));
            assert_eq!(transient, status == 503);
        }
    }
}
