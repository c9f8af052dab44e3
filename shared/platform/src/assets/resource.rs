//! The handlers every asset shares, written once over [`Asset`]: `GET {id}` (with `ETag` and
//! `If-None-Match`), `PUT {id}` ([`update`], with `If-Match`; the function's body type says
//! how it applies, [`Edit`]), `DELETE {id}` (with `If-Match`, then whatever else the asset's
//! function removes with it) and the share rights (`GET`/`PUT {id}/share-rights`); and the
//! list ([`list`], or [`page`] over assets read with something else), whose typed filters
//! each function gives. A function mounts them with its record type, e.g.
//! `route(GET, "/klips/{id}", resource::show::<Klip>, ...)`.

use super::{
    check_if_match, check_share_rights, find, for_list, ok_with_etag, remove, save, view, Asset,
    ListRead, Listable, ShareBody,
};
use crate::auth::Caller;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, NoParams};
use crate::paging::Listing;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;

/// What goes with an asset when it is deleted (its function's business: the Klip instances
/// that showed a Klip, a dashboard's published links). Runs after the asset is gone.
pub trait OnDelete<A>: Send + Sync + 'static {
    fn after_delete(state: &AppState, asset: &A) -> impl Future<Output = ApiResult<()>> + Send;
}

/// Nothing else goes.
pub struct NothingElse;

impl<A: Asset> OnDelete<A> for NothingElse {
    async fn after_delete(_state: &AppState, _asset: &A) -> ApiResult<()> {
        Ok(())
    }
}

/// `GET` of a list: the assets of kind `A` the caller may see and `keep` accepts, sorted and
/// paged as the query says, each as its view, under `key` (`{"<key>": [..]}` with the
/// paging meta).
pub async fn list<A: Asset, F>(
    state: &AppState,
    caller: &Caller,
    query: &Listing<F>,
    key: &str,
    keep: impl Fn(&A) -> bool,
) -> ApiResult<Response> {
    let read = for_list::<A, F>(state, caller, query).await?;
    page(query, key, read, keep, |a| view(a))
}

/// The list of the assets `read` (see [`for_list`]) that `keep` accepts, sorted and paged as
/// the query says, each as `show` makes it, under `key`: [`list`] for a function that reads
/// something else alongside the assets or shows them its own way. (A page the database cut
/// was read for a list without filters: `keep` is the list's filters, so it holds for all.)
pub fn page<A: Asset, F>(
    query: &Listing<F>,
    key: &str,
    read: ListRead<A>,
    keep: impl Fn(&A) -> bool,
    show: impl Fn(&A) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let (page, total) = match read {
        ListRead::Page { page, total } => (page, total),
        ListRead::All(assets) => {
            let listed: Vec<Listable<A>> = assets
                .into_iter()
                .filter(|a| keep(a))
                .map(Listable)
                .collect();
            let (page, total) = query.paging.apply(listed);
            (page.into_iter().map(|a| a.0).collect(), total)
        }
    };
    let views = page.iter().map(show).collect::<ApiResult<Vec<_>>>()?;
    let meta = query.meta(views.len(), total);
    Ok(envelope::list(key, views, meta))
}

/// `GET {id}`: the asset's view with its `ETag`; 304 when `If-None-Match` names it.
pub async fn show<A: Asset>(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let asset: A = find(&state, &caller, &id).await?;
    Ok(ok_with_etag(&headers, asset.meta().version, view(&asset)?))
}

/// An asset's update body (`PUT {id}`, a partial update): how it is checked and applied,
/// and what the answer shows. The function's business; [`update`] does the rest.
pub trait Edit<A: Asset>: DeserializeOwned + Clone + Send + 'static {
    /// Checks the body and applies it to `asset`, a copy of the stored one: a 400 naming
    /// every problem (or what resolving a reference answers) leaves the stored one as it is.
    fn apply(
        self,
        state: &AppState,
        caller: &Caller,
        asset: &mut A,
    ) -> impl Future<Output = ApiResult<()>> + Send;

    /// The answer to the update: the saved asset as its function shows it (`old` is the
    /// one before). Its view, unless the function says otherwise.
    fn answer(
        state: &AppState,
        caller: &Caller,
        old: &A,
        saved: A,
    ) -> impl Future<Output = ApiResult<Value>> + Send {
        let _ = (state, caller, old);
        async move { view(&saved) }
    }
}

/// `PUT {id}`: applies the body `B` to the asset (412 unless `If-Match` names its version,
/// when sent) and saves it (409 when its new slug is taken), then answers as `B` says. When
/// another writer saved in between: with `If-Match`, 412; without, the body is applied to a
/// fresh read (at most [`UPDATE_TRIES`] times in all, then 412).
pub async fn update<A: Asset, B: Edit<A>>(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<B>,
) -> ApiResult<Response> {
    // Without `If-Match` the caller set no precondition: a change saved meanwhile (an
    // alert's evaluation, another edit) is read and the body applied to it again, as the
    // contract answers 412 only to a stale `If-Match`.
    let unconditional = !headers.contains_key(axum::http::header::IF_MATCH);
    let mut old: A = find(&state, &caller, &id).await?;
    check_if_match(&headers, old.meta())?;
    for attempt in 1.. {
        let mut new = old.clone();
        body.clone().apply(&state, &caller, &mut new).await?;
        match save(&state, &old, new).await {
            Ok(saved) => return Ok(envelope::ok(B::answer(&state, &caller, &old, saved).await?)),
            Err(ApiError::PreconditionFailed(_)) if unconditional && attempt < UPDATE_TRIES => {
                old = find(&state, &caller, &id).await?;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns by its last attempt")
}

/// How many times an update without `If-Match` is applied to a fresh read when the asset
/// changed between its read and its save.
const UPDATE_TRIES: usize = 4;

/// `DELETE {id}`: removes the asset and its slug (412 unless `If-Match` names its version,
/// when sent), then what `D` says goes with it.
pub async fn delete<A: Asset, D: OnDelete<A>>(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let asset: A = find(&state, &caller, &id).await?;
    check_if_match(&headers, asset.meta())?;
    remove(&state, &asset).await?;
    D::after_delete(&state, &asset).await?;
    Ok(envelope::deleted())
}

/// `GET {id}/share-rights`: `{"groups":[{group_id, can_edit}]}`.
pub async fn share_rights<A: Asset>(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let asset: A = find(&state, &caller, &id).await?;
    Ok(envelope::ok(
        serde_json::json!({"groups": asset.meta().share_rights}),
    ))
}

/// `PUT {id}/share-rights {"groups":[{group_id, can_edit}]}`: replaces them (every group
/// must exist; `If-Match` honoured).
pub async fn put_share_rights<A: Asset>(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ShareBody>,
) -> ApiResult<Response> {
    let old: A = find(&state, &caller, &id).await?;
    check_if_match(&headers, old.meta())?;
    let rights = check_share_rights(&state, &caller, &body.groups).await?;
    let mut new = old.clone();
    new.meta_mut().share_rights = rights;
    let saved = save(&state, &old, new).await?;
    Ok(envelope::ok(
        serde_json::json!({"groups": saved.meta().share_rights}),
    ))
}
