//! The handlers every asset shares, written once over [`Asset`]: `GET {id}` (with `ETag` and
//! `If-None-Match`), `DELETE {id}` (with `If-Match`, then whatever else the asset's function
//! removes with it) and the share rights (`GET`/`PUT {id}/share-rights`); and the list
//! ([`list`]), whose filters each function gives. A function mounts
//! them with its record type, e.g. `route(GET, "/klips/{id}", resource::show::<Klip>, ...)`.

use super::{
    all_visible, check_if_match, check_share_rights, find, ok_with_etag, remove, save, view, Asset,
    Listable, ShareBody,
};
use crate::auth::Caller;
use crate::envelope;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::extract::{JsonBody, NoParams};
use crate::paging::Paging;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
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
/// paged as `paging` says (read from `params`), each as its view, under `key`
/// (`{"<key>": [..]}` with the paging meta).
pub async fn list<A: Asset>(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    paging: &Paging,
    key: &str,
    keep: impl Fn(&A) -> bool,
) -> ApiResult<Response> {
    let listed: Vec<Listable<A>> = all_visible::<A>(state, caller)
        .await?
        .into_iter()
        .filter(|a| keep(a))
        .map(Listable)
        .collect();
    let (page, total) = paging.apply(listed);
    let views = page
        .iter()
        .map(|a| view(&a.0))
        .collect::<ApiResult<Vec<_>>>()?;
    let meta = paging.meta(params, views.len(), total);
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
