//! Writes held until admission decides. A route that opts in ([`crate::access::Access::held`])
//! runs its handler while the credential is verified and the request counted (see
//! [`crate::admission`]), with the caller this instance verified last time for the same
//! credential, so its reads overlap admission's round trip. Every database write the
//! handler makes waits in [`admitted`] until admission has decided:
//! - the request is admitted, as exactly the caller the handler was given (every field
//!   compared), within the limits, holding the route's permission: the write goes ahead,
//!   and the handler's answer is the request's;
//! - anything else (refused, unauthenticated, over a limit, another caller): the write fails
//!   without reaching the database, the handler's answer is thrown away, and admission
//!   answers the refusal or runs the handler again with the caller it verified.
//!
//! So a write happens only for an admitted request and as the verified caller, as without
//! the hold; what the handler reads first may be read for a request that is then refused,
//! as a speculative read's is. The store's write methods wait here; the SDK interceptor
//! ([`crate::metrics::CountCalls`]) refuses any database write a held handler makes
//! without waiting, so a write that bypasses the store fails loudly instead of landing
//! early. Files are not held: before its first database write a held handler may only
//! write new files that no item refers to yet (an appended segment), and removes them when
//! it is refused (the sweep removes what is left). Outbound requests wait like writes
//! ([`outbound`]), and a speculative read may make none.

use crate::error::ApiError;
use tokio::sync::watch;

tokio::task_local! {
    static HELD: watch::Receiver<Option<bool>>;
    /// Set while a speculative read runs (see [`speculative`]).
    static SPECULATIVE: ();
}

/// Runs a speculative read's handler (see [`crate::admission`]): its answer may be thrown
/// away, so its only effects may be reads. A database write through the store fails
/// ([`admitted`] refuses, as the SDK interceptor refuses one that bypasses the store: see
/// [`writes_held`]), and so does a request to a third party ([`outbound`]): a read route
/// that writes fails its tests loudly instead of writing for a caller not yet verified.
pub async fn speculative<F: std::future::Future>(work: F) -> F::Output {
    SPECULATIVE.scope((), work).await
}

/// Waits until the request may reach a third party (a URL data source's endpoint, a
/// notification): at once outside a held handler; in a held one, once admission admitted
/// it, exactly as its database writes wait ([`admitted`]); in a speculative read, never: an
/// error, because such a handler's effects must be nothing but reads. The connector calls
/// it before it connects, so no route can send a request out before admission decided.
pub async fn outbound() -> Result<(), ApiError> {
    if SPECULATIVE.try_with(|_| ()).is_ok() {
        return Err(ApiError::internal(
            "a speculative read tried to reach a third party",
        ));
    }
    Ok(admitted().await?)
}

/// Why a held write may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// It was made by a speculative read, which may write nothing (a fault of the route).
    Speculative,
    /// Admission decided against the request it was made for.
    Refused,
}

impl From<NotAdmitted> for ApiError {
    fn from(why: NotAdmitted) -> Self {
        crate::store::StoreError::from(why).into()
    }
}

/// Admission's side of a hold: sends the decision once.
pub struct Verdict(watch::Sender<Option<bool>>);

impl Verdict {
    /// `true`: the held writes may go ahead; `false`: they fail.
    pub fn decide(self, admitted: bool) {
        let _ = self.0.send(Some(admitted));
    }
}

/// A new hold: the verdict to send and the handler's side (see [`within`]).
pub fn hold() -> (Verdict, watch::Receiver<Option<bool>>) {
    let (tx, rx) = watch::channel(None);
    (Verdict(tx), rx)
}

/// Runs a handler's future with its writes held on `rx`.
pub async fn within<F: std::future::Future>(
    rx: watch::Receiver<Option<bool>>,
    work: F,
) -> F::Output {
    HELD.scope(rx, work).await
}

/// Waits until the request is admitted; at once outside a held handler. An error when it
/// is not (the handler's answer is thrown away then).
pub async fn admitted() -> Result<(), NotAdmitted> {
    if SPECULATIVE.try_with(|_| ()).is_ok() {
        return Err(NotAdmitted::Speculative);
    }
    let Ok(mut rx) = HELD.try_with(Clone::clone) else {
        return Ok(());
    };
    match rx.wait_for(Option::is_some).await.map(|v| *v) {
        Ok(Some(true)) => Ok(()),
        _ => Err(NotAdmitted::Refused),
    }
}

/// Whether this handler's writes were refused (admission decided against it): what it
/// wrote before, new files only, is its to remove.
pub fn refused() -> bool {
    HELD.try_with(|rx| *rx.borrow() == Some(false))
        .unwrap_or(false)
}

/// Whether database writes are held now: inside a held handler before admission said yes,
/// and always inside a speculative read (which may write nothing).
pub fn writes_held() -> bool {
    SPECULATIVE.try_with(|_| ()).is_ok()
        || HELD
            .try_with(|rx| *rx.borrow() != Some(true))
            .unwrap_or(false)
}

/// The DynamoDB operations that write.
pub fn is_database_write(operation: &str) -> bool {
    matches!(
        operation,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_wait_for_the_verdict_and_fail_without_it() {
        assert!(admitted().await.is_ok());
        assert!(!writes_held());
        let (verdict, rx) = hold();
        let handler = within(rx, async {
            assert!(writes_held());
            let ok = admitted().await.is_ok();
            (ok, writes_held())
        });
        let decide = async {
            tokio::task::yield_now().await;
            verdict.decide(true);
        };
        let ((ok, held_after), ()) = tokio::join!(handler, decide);
        assert!(ok);
        assert!(!held_after);

        let (verdict, rx) = hold();
        let handler = within(rx, async {
            (admitted().await.is_ok(), writes_held(), refused())
        });
        verdict.decide(false);
        assert_eq!(handler.await, (false, true, true));
        assert!(!refused());

        // Outbound traffic waits like a write; a speculative read may make none.
        assert!(outbound().await.is_ok());
        let (verdict, rx) = hold();
        verdict.decide(false);
        assert!(within(rx, outbound()).await.is_err());
        assert!(speculative(outbound()).await.is_err());
        assert!(speculative(admitted()).await.is_err());
        assert!(speculative(async { writes_held() }).await);

        // A verdict never sent (admission gone) refuses too.
        let (verdict, rx) = hold();
        drop(verdict);
        assert!(within(rx, admitted()).await.is_err());
    }
}
