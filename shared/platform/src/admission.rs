//! Admission: the route layer every route sits behind (see [`crate::routes`]); a public route
//! passes it untouched but for its route, which the request's log line and metrics carry.
//!
//! For a caller's route the request passes these steps, each a small function below:
//! 1. **present**: read the credential from the headers (401 when there is none);
//! 2. **claim**: who the credential claims to be, without the database where possible;
//! 3. **act in**: the company the request acts in (`client_id=` names one of the caller's
//!    client accounts, whose limits it then counts against); a company this instance already
//!    saw at or over its per-second limit in this second is refused from memory, and a
//!    request beyond as many of the company's as its limit still counting waits for them;
//! 4. **verify and count**: the credential is checked against the store (see
//!    [`crate::auth::verify`]) and the request counted on the company's counters
//!    ([`crate::ratelimit`]), *concurrently* when the credential itself proves the company (a
//!    key's hash or a signed token) and this instance verified it before, so admission costs
//!    one round trip; a password, a client account not yet shown to be the caller's, or a
//!    credential this instance has not seen hold (new, or just failed) is verified first, so
//!    nobody can spend a company's allowance by naming it or by sending dead credentials. A
//!    signed access token counts as seen when it carries its caller (see
//!    [`crate::auth::CallerSnapshot`]) and has not failed here: its signature proves the
//!    company, and its snapshot is the guess of step 5;
//! 5. **speculate** (routes that opt in, [`Access::read`]): the handler runs alongside step 4
//!    with the caller this instance verified last time for the same credential. This is
//!    safe because such handlers write nothing and their answer depends only on the caller
//!    and stored data; the answer is kept only when verification yields the very same caller
//!    (every field compared), and otherwise thrown away and the handler run again. Writes
//!    that opt in ([`Access::held`]) run the same way with their database writes held
//!    until step 6 has admitted the request as that very caller (see [`crate::held`]);
//! 6. **settle**: a request that did not authenticate gives its counts back; one over a
//!    limit is refused (429 with `X-RateLimit-*`) and gives its day count back; then the
//!    route's permission is checked (403) and the handler runs with the [`Caller`].
//!
//! A published link's route ([`Access::PublishedLink`]) resolves its `{token}` to the owner
//! company with its function's [`ResolveLink`] and counts the view on counters of its own
//! (the link's and the owner's allowance for public views, [`PublicView`]), the same way
//! but never on the owner's API counters (a visitor has no credential to verify). Its handler
//! only reads, so it runs while the request is counted; a refused request's answer is
//! thrown away. A link this instance resolved before is counted against its remembered
//! owner while it is resolved again (one round trip), and gives the count back when it is
//! gone.

use crate::access::{Access, Speculate};
pub use crate::access::{LinkOwner, ResolveLink};
use crate::auth::credential::{claim, credential, Claimed, Credential};
use crate::auth::verify::{verify, verify_reading};
use crate::auth::{Caller, RequestUsage};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::{Counted, RateHeaders, Usage};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// The state of the admission layer of one route: the app and the route's access.
#[derive(Clone, Debug)]
pub struct Gate {
    state: AppState,
    access: Access,
    /// The route's declared path, for the request's log span.
    route: &'static str,
}

impl Gate {
    pub fn new(state: AppState, access: Access, route: &'static str) -> Self {
        Gate {
            state,
            access,
            route,
        }
    }
}

/// The route layer (see the module documentation for the steps).
pub async fn admit(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    tracing::Span::current().record("route", gate.route);
    crate::metrics::set_route(gate.route);
    match gate.access {
        Access::Public => next.run(req).await,
        Access::PublishedLink(resolve) => {
            match admit_published(&gate.state, resolve, req, next).await {
                Ok(response) | Err(response) => response,
            }
        }
        // Boxed: its future is large, and a debug build's frames would add it up on the stack.
        Access::Caller { .. } => match Box::pin(admit_caller(&gate, req, next)).await {
            Ok(response) | Err(response) => response,
        },
    }
}

/// The counting side of admission for one company and one instant.
struct Admission<'a> {
    state: &'a AppState,
    company: String,
    now: DateTime<Utc>,
    /// The API key whose use the company's counter records with the request (see
    /// [`crate::auth::verify::key_use_counted`]).
    key_use: Option<String>,
}

impl<'a> Admission<'a> {
    fn new(state: &'a AppState, company: String, now: DateTime<Utc>) -> Self {
        Admission {
            state,
            company,
            now,
            key_use: None,
        }
    }

    /// 429 without a database call when this instance already refused the company in this
    /// very second.
    fn refused_from_memory(&self) -> Option<Response> {
        self.state
            .limiter
            .refused_from_memory(&self.company, self.now)
            .map(|(error, headers)| with_rate_headers(error.into_response(), &headers))
    }

    /// Waits while as many of the company's requests as its per-second limit are counting.
    async fn enter(&self, per_second_limit: u64) -> crate::ratelimit::Entry<'a> {
        self.state
            .limiter
            .enter(&self.company, self.now, per_second_limit)
            .await
    }

    async fn count(&self) -> ApiResult<Counted> {
        self.state
            .limiter
            .count(
                &self.state.store,
                &self.company,
                self.now,
                self.key_use.as_deref(),
            )
            .await
    }

    /// Gives back the day count of a request that was not served.
    async fn refund(&self, counted: &Counted) {
        self.state
            .limiter
            .refund(&self.state.store, &self.company, counted)
            .await
    }

    /// Gives back the counts of a request that did not authenticate.
    async fn refund_unauthenticated(&self, counted: &Counted) {
        self.state
            .limiter
            .refund_unauthenticated(
                &self.state.store,
                &self.company,
                counted,
                self.key_use.as_deref(),
            )
            .await
    }

    /// Admits within the company's limits, or answers the refusal to send.
    async fn settle(
        &self,
        counted: &Counted,
        per_second: u64,
        daily: u64,
    ) -> Result<RateHeaders, Response> {
        self.state
            .limiter
            .settle(
                &self.state.store,
                &self.company,
                counted,
                crate::ratelimit::Limits { per_second, daily },
                self.now,
                self.key_use.as_deref(),
            )
            .await
            .map_err(|(error, headers)| with_rate_headers(error.into_response(), &headers))
    }
}

/// Step 3: the client account named by `client_id=`, if any (404 for something that is no
/// id at all, before anything is counted).
fn acting_in(req: &Request) -> ApiResult<Option<String>> {
    let client = crate::extract::Params::from_query(req.uri().query(), "")
        .get("client_id")
        .map(str::to_owned);
    match client {
        Some(id) if !domain::ids::is_id(&id) => Err(ApiError::not_found("client", &id)),
        other => Ok(other),
    }
}

/// Whether the credential itself proves the company the request counts against (a key's
/// hash or a signed token, acting in the caller's own company).
fn proves_company(credential: &Credential, client: Option<&str>) -> bool {
    !matches!(credential, Credential::Basic { .. }) && client.is_none()
}

/// What step 4 found.
struct Checked<'a> {
    verified: ApiResult<Caller>,
    counted: ApiResult<Counted>,
    /// A verified caller's request refused from memory, without counting: the company's
    /// requests counting ahead of it reached its per-second limit.
    refused: Option<Response>,
    /// The request's place among the company's requests counting (see
    /// [`crate::ratelimit::RateLimiter::enter`]), held until it is settled.
    entry: Option<crate::ratelimit::Entry<'a>>,
}

impl Checked<'_> {
    fn new(verified: ApiResult<Caller>, counted: ApiResult<Counted>) -> Self {
        Checked {
            verified,
            counted,
            refused: None,
            entry: None,
        }
    }
}

/// Step 4: verification and counting, concurrently only when the credential proves the
/// company by itself and this instance verified it before (`remembered`): a credential it
/// has not seen hold (a new one, or one that just failed: revoked, expired, a session
/// ended) is verified first, so a flood of dead credentials never takes the company's
/// allowance, not even until its refunds land.
///
/// A request verified first then takes its turn among the company's requests counting, as a
/// remembered caller's does before (its caller is proven now, so waiting cannot be forced on
/// the company by a stranger): a burst of a credential this instance has not seen yet counts
/// only as many requests as the limit, and the rest are refused from memory.
async fn verify_and_count<'a>(
    admission: &Admission<'a>,
    credential: &Credential,
    claimed: &Claimed,
    client: Option<&str>,
    remembered: bool,
) -> Checked<'a> {
    let state = admission.state;
    let count_after = !proves_company(credential, client) || !remembered;
    if count_after {
        match verify_first(admission, credential, claimed, client).await {
            First::Verified(caller, entry) => count_verified(admission, caller, entry).await,
            First::Stopped(checked) => checked,
        }
    } else {
        let (verified, counted) = tokio::join!(
            verify(state, credential, claimed, client, admission.now),
            admission.count()
        );
        Checked::new(verified, counted)
    }
}

/// What verifying a credential first found.
enum First<'a> {
    /// The caller is proven, and the request has its place among the company's requests
    /// counting: it may be counted now.
    Verified(Caller, crate::ratelimit::Entry<'a>),
    /// The credential did not hold, or the company is at its limit this second (refused from
    /// memory): nothing to count.
    Stopped(Checked<'a>),
}

/// Step 4's first half for a credential verified before it is counted: the verification,
/// then the request's place among the company's requests counting.
async fn verify_first<'a>(
    admission: &Admission<'a>,
    credential: &Credential,
    claimed: &Claimed,
    client: Option<&str>,
) -> First<'a> {
    // A key or token names the company it will count against: in the very read that
    // verifies it, a new instance learns which second that company's counter counts, so
    // that the count after it makes one write.
    let (state, company) = (admission.state, admission.company.as_str());
    let counter = proves_company(credential, client)
        .then(|| state.limiter.second_to_learn(company, admission.now))
        .flatten();
    let learns = counter.is_some();
    let verified = verify_reading(state, credential, claimed, client, admission.now, counter);
    let caller = match verified.await {
        Ok((caller, day_item)) => {
            if learns {
                state.limiter.learn_second(company, day_item.as_ref());
            }
            caller
        }
        Err(error) => {
            let not_counted = ApiError::internal("not counted: the credential did not hold");
            return First::Stopped(Checked::new(Err(error), Err(not_counted)));
        }
    };
    let refused = |caller, response| {
        First::Stopped(Checked {
            refused: Some(response),
            ..Checked::new(Ok(caller), Err(ApiError::internal("refused from memory")))
        })
    };
    if let Some(response) = admission.refused_from_memory() {
        return refused(caller, response);
    }
    let entry = admission.enter(caller.company.per_second_limit).await;
    if let Some(response) = admission.refused_from_memory() {
        return refused(caller, response);
    }
    First::Verified(caller, entry)
}

/// Step 4's second half for a caller verified first: the count.
async fn count_verified<'a>(
    admission: &Admission<'a>,
    caller: Caller,
    entry: crate::ratelimit::Entry<'a>,
) -> Checked<'a> {
    Checked {
        entry: Some(entry),
        ..Checked::new(Ok(caller), admission.count().await)
    }
}

/// The request still to answer after verification.
enum Pending {
    Request(Request),
    /// The handler already ran with the remembered caller; `response` is kept only when this
    /// request verified as that same caller. `spare` re-runs it otherwise.
    Speculated {
        spare: Request,
        response: Option<Response>,
    },
}

/// Step 5: runs the handler with `guess` while `checks` run; keeps its answer only when the
/// verified caller equals the guess.
async fn speculate<'a>(
    guess: Caller,
    permission: Option<&'static str>,
    req: Request,
    next: Next,
    checks: impl std::future::Future<Output = Checked<'a>>,
) -> (Checked<'a>, Pending) {
    let (parts, body) = req.into_parts();
    let spare = Request::from_parts(parts.clone(), Body::empty());
    let mut first = Request::from_parts(parts, body);
    first.extensions_mut().insert(guess.clone());
    let run = crate::held::speculative(async {
        match permission.map(|p| guess.require(p)) {
            Some(Err(e)) => e.into_response(),
            _ => next.run(first).await,
        }
    });
    let (checked, response) = tokio::join!(checks, run);
    let same = checked.verified.as_ref().is_ok_and(|v| *v == guess);
    (
        checked,
        Pending::Speculated {
            spare,
            response: same.then_some(response),
        },
    )
}

/// Steps 1–6 for a caller's route; `Err` is a refusal.
async fn admit_caller(gate: &Gate, req: Request, next: Next) -> Result<Response, Response> {
    let state = &gate.state;
    let now = state.clock.now();
    let credential = credential(req.headers()).map_err(IntoResponse::into_response)?;
    let mut claimed = claim(state, &credential, now)
        .await
        .map_err(IntoResponse::into_response)?;
    let client = acting_in(&req).map_err(IntoResponse::into_response)?;
    let admission = act_in(state, &mut claimed, client.as_deref(), now);
    let remembered = remembered(state, &mut claimed, client.as_deref());
    let entry = enter_remembered(
        &admission,
        &credential,
        client.as_deref(),
        remembered.as_ref(),
    )
    .await?;
    let (settled, pending) = match remembered {
        Some(remembered) => {
            let checks =
                verify_and_count(&admission, &credential, &claimed, client.as_deref(), true);
            let speculating = settle_speculating(
                gate,
                &admission,
                &claimed,
                checks,
                Some(remembered),
                req,
                next.clone(),
            );
            Box::pin(speculating).await
        }
        // A credential this instance has not seen hold is verified first (it takes nothing of
        // the company's allowance until it holds); once it does, its request is counted
        // while the handler runs with it, as a remembered caller's is: a read's answer is
        // kept only if the count admits it, and writes wait for the count.
        None => {
            let first = verify_first(&admission, &credential, &claimed, client.as_deref()).await;
            // Boxed as a trait object: the two kinds of future in one type.
            type Checks<'f, 'a> =
                std::pin::Pin<Box<dyn std::future::Future<Output = Checked<'a>> + Send + 'f>>;
            let (checks, guess): (Checks<'_, '_>, _) = match first {
                First::Verified(caller, entry) => {
                    let guess = caller.clone();
                    (
                        Box::pin(count_verified(&admission, caller, entry)),
                        Some(guess),
                    )
                }
                First::Stopped(checked) => (Box::pin(std::future::ready(checked)), None),
            };
            let speculating =
                settle_speculating(gate, &admission, &claimed, checks, guess, req, next.clone());
            Box::pin(speculating).await
        }
    };
    let (caller, counted, headers) = settled?;
    drop(entry);
    let response = run_admitted(pending, caller, &counted, next).await;
    Ok(with_rate_headers(response, &headers))
}

/// The caller this instance verified last time for the same credential, if any; or else a
/// signed token's snapshot of its caller (acting in its own company), unless this instance
/// saw the token fail. Either is a guess, checked by verification, and means the credential
/// itself was shown to hold: a token's signature is checked before this, so a snapshot is
/// never a stranger's.
fn remembered(state: &AppState, claimed: &mut Claimed, client: Option<&str>) -> Option<Caller> {
    let fingerprint = claimed.fingerprint.as_deref()?;
    if let Some(caller) = state.caches.callers.get(fingerprint) {
        return Some(caller);
    }
    let snapshot = claimed.snapshot.take()?;
    (client.is_none() && state.caches.failed.get(fingerprint).is_none()).then_some(*snapshot)
}

/// Step 3: the admission that counts the request in the company it acts in; the claimed
/// key's use and the remembered caller's fingerprint take the client acted in into account.
fn act_in<'a>(
    state: &'a AppState,
    claimed: &mut Claimed,
    client: Option<&str>,
    now: DateTime<Utc>,
) -> Admission<'a> {
    let mut admission = Admission::new(
        state,
        client
            .map(str::to_owned)
            .unwrap_or_else(|| claimed.company_id.clone()),
        now,
    );
    if let (Some(key), None) = (&claimed.key, client) {
        claimed.key_use_on_own_item = !state.limiter.key_fits(&admission.company, &key.key_id, now);
    }
    admission.key_use = crate::auth::verify::key_use_counted(claimed, client).map(str::to_owned);
    tracing::Span::current().record("company", admission.company.as_str());
    // The remembered caller depends on the client acted in, too.
    if let (Some(fingerprint), Some(client)) = (claimed.fingerprint.as_mut(), client) {
        fingerprint.push('@');
        fingerprint.push_str(client);
    }
    admission
}

/// Step 3's memory: for a remembered caller whose credential proves its company by itself,
/// refuses a company this instance saw at its per-second limit, and takes the request's
/// place among the company's requests counting at once (waiting for one).
async fn enter_remembered<'a>(
    admission: &Admission<'a>,
    credential: &Credential,
    client: Option<&str>,
    remembered: Option<&Caller>,
) -> Result<Option<crate::ratelimit::Entry<'a>>, Response> {
    // Refusing from memory is only for credentials that prove their company by themselves
    // and held before: a password, a client account or an unproven credential is verified
    // first, so that a failed login (or a stranger naming a client, or a dead key) learns
    // nothing of that company's limits.
    let (true, Some(caller)) = (proves_company(credential, client), remembered) else {
        return Ok(None);
    };
    if let Some(refused) = admission.refused_from_memory() {
        return Err(refused);
    }
    // No more of the company's requests counting at once than its per-second limit;
    // those that waited may find it reached.
    let entry = admission.enter(caller.company.per_second_limit).await;
    if let Some(refused) = admission.refused_from_memory() {
        return Err(refused);
    }
    Ok(Some(entry))
}

/// Steps 4 to 6 up to the handler (`checks` is step 4), with step 5 alongside for a
/// remembered caller on a route that speculates: the request settled, and the request or the
/// handler's answer pending.
async fn settle_speculating<'a>(
    gate: &Gate,
    admission: &Admission<'a>,
    claimed: &Claimed,
    checks: impl std::future::Future<Output = Checked<'a>>,
    remembered: Option<Caller>,
    req: Request,
    next: Next,
) -> (Settled, Pending) {
    let settle = |checked| settle_caller(gate, admission, claimed, checked);
    let speculation = gate.access.speculation();
    match remembered {
        Some(guess) if speculation == Speculate::Reads => {
            let speculated = speculate(guess, gate.access.permission(), req, next, checks);
            let (checked, pending) = Box::pin(speculated).await;
            (Box::pin(settle(checked)).await, pending)
        }
        Some(guess) if speculation == Speculate::Writes && bounded(&req) => {
            let settled = async { settle(checks.await).await };
            Box::pin(hold_writes(
                guess,
                gate.access.permission(),
                req,
                next,
                settled,
            ))
            .await
        }
        _ => (
            Box::pin(async { settle(checks.await).await }).await,
            Pending::Request(req),
        ),
    }
}

/// Step 6's end: the handler's answer kept from step 5, or the handler run now with the
/// admitted caller and the request's usage.
async fn run_admitted(pending: Pending, caller: Caller, counted: &Counted, next: Next) -> Response {
    match pending {
        Pending::Speculated {
            response: Some(response),
            ..
        } => response,
        Pending::Speculated {
            spare: mut req,
            response: None,
        }
        | Pending::Request(mut req) => {
            let (per_second, daily) = (caller.company.per_second_limit, caller.company.daily_limit);
            let actor = crate::audit::actor_of(&caller);
            req.extensions_mut().insert(caller);
            req.extensions_mut()
                .insert(RequestUsage(Usage::new(counted, per_second, daily)));
            crate::audit::acting(actor, next.run(req)).await
        }
    }
}

/// Step 6 up to the handler: the caller admitted, with the request's counts and rate
/// headers, or the refusal to answer (401 and the counts given back, 429, 403).
async fn settle_caller(
    gate: &Gate,
    admission: &Admission<'_>,
    claimed: &Claimed,
    checked: Checked<'_>,
) -> Settled {
    let state = &gate.state;
    // The request keeps its place among those counting until it is settled.
    let _entry = checked.entry;
    let caller = match checked.verified {
        Ok(caller) => caller,
        Err(error) => {
            if let Ok(counted) = &checked.counted {
                admission.refund_unauthenticated(counted).await;
            }
            forget(state, claimed, &error);
            return Err(error.into_response());
        }
    };
    if let Some(refused) = checked.refused {
        if let Some(fingerprint) = &claimed.fingerprint {
            state
                .caches
                .callers
                .insert(fingerprint.clone(), caller.clone());
        }
        return Err(refused);
    }
    let counted = checked.counted.map_err(IntoResponse::into_response)?;
    let (per_second, daily) = (caller.company.per_second_limit, caller.company.daily_limit);
    let headers = admission.settle(&counted, per_second, daily).await?;
    if let Some(fingerprint) = &claimed.fingerprint {
        state.caches.failed.remove(fingerprint);
        state
            .caches
            .callers
            .insert(fingerprint.clone(), caller.clone());
    }
    if let Some(permission) = gate.access.permission() {
        if let Err(error) = caller.require(permission) {
            return Err(with_rate_headers(error.into_response(), &headers));
        }
    }
    Ok((caller, counted, headers))
}

/// What [`settle_caller`] answers: the caller admitted, with the request's counts and rate
/// headers, or the refusal.
type Settled = Result<(Caller, Counted, RateHeaders), Response>;

/// Whether the request's body has a known length within the edge's limit (a held handler
/// may have to run twice, so its body is read first): a `Content-Length`, or a Lambda
/// event's body. A body of unknown length (chunked) is not held: read by the handler as it
/// comes, it meets the limits exactly as without a hold.
fn bounded(req: &Request) -> bool {
    use axum::body::HttpBody;
    req.body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= crate::http::MAX_BODY as u64)
}

/// Step 5 for [`Speculate::Writes`]: runs the handler with `guess`, its database writes
/// held (see [`crate::held`]), while `settled` (steps 4 and 6 up to the handler) runs; the
/// writes go ahead only when the request is admitted as `guess`. Otherwise the handler's
/// answer is thrown away (`spare` runs it again with the verified caller).
async fn hold_writes(
    guess: Caller,
    permission: Option<&'static str>,
    req: Request,
    next: Next,
    settled: impl std::future::Future<Output = Settled>,
) -> (Settled, Pending) {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, crate::http::MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let refused = ApiError::BadRequest("the request body could not be read".into());
            let spare = Request::from_parts(parts, Body::empty());
            return (
                settled.await,
                Pending::Speculated {
                    spare,
                    response: Some(refused.into_response()),
                },
            );
        }
    };
    let spare = Request::from_parts(parts.clone(), Body::from(body.clone()));
    let mut first = Request::from_parts(parts, Body::from(body));
    first.extensions_mut().insert(guess.clone());
    let (verdict, held) = crate::held::hold();
    // Its writes go ahead only when the request is admitted as `guess`: their author.
    let actor = crate::audit::actor_of(&guess);
    let run = Box::pin(crate::held::within(held, async {
        match permission.map(|p| guess.require(p)) {
            Some(Err(e)) => e.into_response(),
            _ => crate::audit::acting(actor, next.run(first)).await,
        }
    }));
    let decide = Box::pin(async {
        let settled = settled.await;
        let same = matches!(&settled, Ok((caller, ..)) if *caller == guess);
        verdict.decide(same);
        (settled, same)
    });
    let ((settled, same), response) = tokio::join!(decide, run);
    (
        settled,
        Pending::Speculated {
            spare,
            response: same.then_some(response),
        },
    )
}

/// After a failed verification this instance stops guessing the caller of the credential,
/// and forgets a key hash whose key no longer holds.
fn forget(state: &AppState, claimed: &Claimed, error: &ApiError) {
    let Some(fingerprint) = &claimed.fingerprint else {
        return;
    };
    state.caches.callers.remove(fingerprint);
    if let ApiError::Unauthorized(_) = error {
        state.caches.failed.insert(fingerprint.clone(), ());
    }
    let hash = fingerprint
        .strip_prefix("key:")
        .map(|f| f.split('@').next().unwrap_or(f));
    if let (Some(hash), ApiError::Unauthorized(_)) = (hash, error) {
        state.caches.key_hashes.remove(hash);
    }
}

/// Admission of a published link's request: resolve the path's `{token}`, then count the
/// view against the link's own allowance and the owner's allowance for public views (see
/// [`PublicView`]), never against the owner's API limits.
async fn admit_published(
    state: &AppState,
    resolve: ResolveLink,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = req.into_parts();
    let params = axum::extract::RawPathParams::from_request_parts(&mut parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    let token = params
        .iter()
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| {
            ApiError::internal("published-link route without {token}").into_response()
        })?;
    let hash = domain::ids::ApiKeyHash::of(&token).0;
    if let Some(company) = state.caches.links.get(&hash).map(|link| link.company_id) {
        // A link this instance resolved before: its owner is known, so the view is counted
        // while the link is resolved (one round trip). A link gone since gives its counts
        // back and is forgotten: the next request with it is resolved first, and counts
        // nothing.
        let view = PublicView::new(state, &company, &hash, state.clock.now());
        tracing::Span::current().record("company", company.as_str());
        if let Some(refused) = view.refused_from_memory() {
            return Err(without_rate_headers(refused));
        }
        let (owner, counted) = tokio::join!(resolve(state, &token), view.count());
        match owner {
            Ok(owner) if owner.company.id == company => {
                let counted = counted.map_err(IntoResponse::into_response)?;
                view.settle(&counted, &owner.company).await?;
                parts.extensions.extend(owner.extensions);
                return Ok(next.run(Request::from_parts(parts, body)).await);
            }
            owner => {
                if let Ok(counted) = &counted {
                    view.give_back(counted).await;
                }
                state.caches.links.remove(&hash);
                owner.map_err(IntoResponse::into_response)?;
                // Another owner than remembered (a link's company never changes): resolved
                // and counted again below.
            }
        }
    }
    let owner = resolve(state, &token)
        .await
        .map_err(IntoResponse::into_response)?;
    // The resolver remembered where the link leads (`Caches::links`).
    let view = PublicView::new(state, &owner.company.id, &hash, state.clock.now());
    tracing::Span::current().record("company", owner.company.id.as_str());
    if let Some(refused) = view.refused_from_memory() {
        return Err(without_rate_headers(refused));
    }
    let company = owner.company.clone();
    let counting = async {
        let counted = view.count().await.map_err(IntoResponse::into_response)?;
        view.settle(&counted, &company).await
    };
    parts.extensions.extend(owner.extensions);
    let req = Request::from_parts(parts, body);
    // A published link's handler only reads (like a speculative route): it runs while the
    // request is counted, and its answer is thrown away when the count refuses it.
    let (admitted, response) = tokio::join!(counting, next.run(req));
    admitted?;
    Ok(response)
}

/// One anonymous view of a published link, counted on two counters of its own: the link's
/// (`RATE#link/<token hash>`: [`Company::public_link_daily_limit`] a day) and the owner's
/// allowance for public views (`RATE#<company>/public`: [`Company::public_daily_limit`] a
/// day), both at most [`Company::public_per_second_limit`] a second. Neither is the owner's
/// API counter, so no amount of anonymous traffic refuses the owner's own requests; a view
/// over either allowance is a 429 on the link only. (The day items expire like the API's;
/// their removal reaches the worker, which finds no key uses on them.)
///
/// [`Company::public_link_daily_limit`]: crate::auth::records::Company::public_link_daily_limit
/// [`Company::public_daily_limit`]: crate::auth::records::Company::public_daily_limit
/// [`Company::public_per_second_limit`]: crate::auth::records::Company::public_per_second_limit
struct PublicView<'a> {
    owner: Admission<'a>,
    link: Admission<'a>,
}

impl<'a> PublicView<'a> {
    fn new(state: &'a AppState, company: &str, hash: &str, now: DateTime<Utc>) -> Self {
        PublicView {
            owner: Admission::new(state, format!("{company}/public"), now),
            link: Admission::new(state, format!("link/{hash}"), now),
        }
    }

    fn refused_from_memory(&self) -> Option<Response> {
        self.link
            .refused_from_memory()
            .or_else(|| self.owner.refused_from_memory())
    }

    /// Counts the view on both counters at once; a failure gives back what was counted.
    async fn count(&self) -> ApiResult<(Counted, Counted)> {
        match tokio::join!(self.owner.count(), self.link.count()) {
            (Ok(owner), Ok(link)) => Ok((owner, link)),
            (Ok(counted), Err(e)) => {
                self.owner.refund_unauthenticated(&counted).await;
                Err(e)
            }
            (Err(e), Ok(counted)) => {
                self.link.refund_unauthenticated(&counted).await;
                Err(e)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Gives back both counts of a view that was not served (its link was gone).
    async fn give_back(&self, (owner, link): &(Counted, Counted)) {
        tokio::join!(
            self.owner.refund_unauthenticated(owner),
            self.link.refund_unauthenticated(link)
        );
    }

    /// Admits the view within both allowances, or answers the 429 to send (without the
    /// owner's `X-RateLimit-*`: a visitor is not the owner). A view refused by one gives its
    /// day count on the other back.
    async fn settle(
        &self,
        (owner, link): &(Counted, Counted),
        company: &crate::auth::records::Company,
    ) -> Result<(), Response> {
        let per_second = company.public_per_second_limit();
        let (by_owner, by_link) = tokio::join!(
            self.owner
                .settle(owner, per_second, company.public_daily_limit()),
            self.link
                .settle(link, per_second, company.public_link_daily_limit())
        );
        let refusal = match (by_owner, by_link) {
            (Ok(_), Ok(_)) => return Ok(()),
            (Err(refused), Ok(_)) => {
                self.link.refund(link).await;
                refused
            }
            (Ok(_), Err(refused)) => {
                self.owner.refund(owner).await;
                refused
            }
            (Err(refused), Err(_)) => refused,
        };
        Err(without_rate_headers(refusal))
    }
}

/// Takes the `X-RateLimit-*` headers off a response.
fn without_rate_headers(mut response: Response) -> Response {
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        response.headers_mut().remove(name);
    }
    response
}

/// Adds the `X-RateLimit-*` headers to a response.
pub fn with_rate_headers(mut response: Response, headers: &RateHeaders) -> Response {
    headers.apply(response.headers_mut());
    response
}
