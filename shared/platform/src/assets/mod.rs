//! Assets — data sources, Klips, dashboards — as the API serves and stores them: ids or slugs
//! in paths, a `version` with `ETag`/`If-Match`/`If-None-Match`, share rights, who may see
//! what, and tenant isolation (another company's id or slug is a 404). What an asset *is*
//! lives in the domain crate (`domain::asset`).
//!
//! Stored as one item per asset in its company's partition (`C#<company>`,
//! `<PREFIX><id>`), plus a slug claim (`SLUG#<PREFIX><slug>` → id) written in the same
//! transaction, so slugs are unique per company and kind.

pub mod ingest;
pub mod resource;
pub mod stored;

pub use domain::asset::{check_common, check_slug, Asset, Kind, Meta, ShareRight};
pub use domain::records;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::state::AppState;
use crate::store::assets::AssetRefused;
use crate::store::{keys, WriteError};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::{is_id, new_id, slugify};
use serde::Deserialize;
use serde_json::Value;

/// Listing support for any asset.
pub struct Listable<A>(pub A);

impl<A: Asset> crate::paging::Listed for Listable<A> {
    fn name(&self) -> &str {
        &self.0.meta().name
    }
    fn date_created(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.meta().date_created
    }
    fn last_updated(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.meta().last_updated
    }
}

/// Callers who hold `<kind>.edit` (`channel.manage` for channels) see every asset of that kind in their company; others
/// (viewers, narrowly scoped keys) see what they created or what is shared with one of
/// their groups.
pub fn visible<A: Asset>(caller: &Caller, asset: &A) -> bool {
    asset.meta().visible_to(
        caller.user_id(),
        &caller.user.groups,
        caller.can(A::KIND.edit_permission()),
    )
}

/// The asset named by `id_or_slug` in the caller's company, if the caller may see it;
/// otherwise 404 (never a hint that it exists elsewhere).
pub async fn find<A: Asset>(state: &AppState, caller: &Caller, id_or_slug: &str) -> ApiResult<A> {
    let company = caller.company_id();
    let not_found = || ApiError::not_found(A::KIND.name(), id_or_slug);
    let id = if is_id(id_or_slug) {
        id_or_slug.to_owned()
    } else if check_slug(id_or_slug).is_err() {
        // Neither an id nor a slug (say, 2,000 characters): not found, without asking.
        return Err(not_found());
    } else {
        state
            .store
            .assets()
            .id_of_slug::<A>(company, id_or_slug)
            .await?
            .ok_or_else(not_found)?
    };
    let asset: A = state
        .store
        .get(keys::asset(A::KIND, company, &id))
        .await?
        .ok_or_else(not_found)?;
    if !visible(caller, &asset) {
        return Err(not_found());
    }
    Ok(asset)
}

/// Every asset of the kind in the caller's company that the caller may see.
pub async fn all_visible<A: Asset>(state: &AppState, caller: &Caller) -> ApiResult<Vec<A>> {
    let all: Vec<A> = state
        .store
        .query_prefix(&keys::company_pk(caller.company_id()), A::KIND.prefix())
        .await?;
    Ok(all.into_iter().filter(|a| visible(caller, a)).collect())
}

/// What a list read of the assets of a kind: the page itself and the number of them all,
/// when the database could page them; or every asset the caller may see, to page in memory.
pub enum ListRead<A> {
    Page { page: Vec<A>, total: usize },
    All(Vec<A>),
}

/// The assets of kind `A` a list shows, read in one round trip. When the list asks for them
/// in creation order (the default, or newest first) and nothing else, the caller sees every
/// asset of the kind and the company's assets are counted
/// ([`domain::accounts::Company::assets_counted`]), the database pages them (their ids sort
/// by creation): the page's assets and those before it, alongside their count. Otherwise
/// every asset the caller may see, to filter, sort and page in memory.
pub async fn for_list<A: Asset, F>(
    state: &AppState,
    caller: &Caller,
    list: &crate::paging::Listing<F>,
) -> ApiResult<ListRead<A>> {
    let in_store =
        caller.company.assets_counted && !list.filtered && caller.can(A::KIND.edit_permission());
    let Some(descending) = list.paging.in_creation_order().filter(|_| in_store) else {
        return Ok(ListRead::All(all_visible(state, caller).await?));
    };
    let (company, assets) = (caller.company_id(), state.store.assets());
    let paging = &list.paging;
    let wanted = paging.offset.saturating_add(paging.limit);
    let (first, total) = tokio::try_join!(
        assets.first::<A>(company, wanted, descending),
        assets.count::<A>(company)
    )?;
    let total = (total as usize).max(first.len());
    let page = first.into_iter().skip(paging.offset).collect();
    Ok(ListRead::Page { page, total })
}

/// Every asset of the kind in a company (for internal work such as recomputing Klips).
pub async fn all_of<A: Asset>(state: &AppState, company: &str) -> ApiResult<Vec<A>> {
    Ok(state
        .store
        .query_prefix(&keys::company_pk(company), A::KIND.prefix())
        .await?)
}

/// Stores a new asset with a fresh id, version 1, and a slug unique in its company: the one
/// given (409 when taken) or one derived from the name (with `-2`, `-3`, ... when taken).
pub async fn create<A: Asset>(state: &AppState, mut asset: A) -> ApiResult<A> {
    let now = state.clock.now();
    let given = !asset.meta().slug.is_empty();
    let base = if given {
        asset.meta().slug.clone()
    } else {
        let s = slugify(&asset.meta().name);
        let s = if s.is_empty() || is_id(&s) {
            A::KIND.name().to_owned()
        } else {
            s
        };
        s.chars()
            .take(58)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    };
    {
        let meta = asset.meta_mut();
        // Ids that sort by creation: the database keeps a kind's assets in creation order,
        // so a list in that order pages there (see `for_list`).
        meta.id = domain::ids::ordered_id(now.timestamp_millis());
        meta.version = 1;
        meta.date_created = now;
        meta.last_updated = now;
    }
    for attempt in 1..=12 {
        // `name`, `name-2` ... `name-5`, then a random suffix, so many assets of one name
        // never run out of slugs.
        let slug = match attempt {
            1 => base.clone(),
            2..=5 => format!("{base}-{attempt}"),
            _ => format!("{base}-{}", &new_id()[..6]),
        };
        asset.meta_mut().slug = slug.clone();
        match state.store.assets().create(&asset).await {
            Ok(()) => return Ok(asset),
            Err(WriteError::Refused(AssetRefused::SlugTaken)) if !given => continue,
            Err(WriteError::Refused(AssetRefused::SlugTaken)) => {
                return Err(ApiError::Conflict(format!(
                    "slug '{slug}' is already used by another {}",
                    A::KIND.name()
                )))
            }
            Err(WriteError::Refused(_)) => {
                return Err(ApiError::Conflict("id collision; retry".into()))
            }
            Err(WriteError::Failed(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!(
        "could not find a free slug for '{base}'; choose one"
    )))
}

/// Saves `new` over `old` if nobody saved in between (412 otherwise), as version + 1.
pub async fn save<A: Asset>(state: &AppState, old: &A, new: A) -> ApiResult<A> {
    save_with(state, old, new, None).await
}

/// [`save`], changing `lookup` (an item that points at the asset) in the same transaction;
/// 409 when a lookup to create exists already (a collision of random tokens).
pub async fn save_with<A: Asset>(
    state: &AppState,
    old: &A,
    mut new: A,
    lookup: Option<crate::store::assets::Lookup>,
) -> ApiResult<A> {
    let now = state.clock.now();
    {
        let meta = new.meta_mut();
        meta.version = old.meta().version + 1;
        meta.last_updated = now;
    }
    let (kind, id, version, slug) = (
        A::KIND.name(),
        new.meta().id.clone(),
        old.meta().version,
        new.meta().slug.clone(),
    );
    let replaced = state.store.assets().replace_with(old, &new, lookup).await;
    replaced.map_err(|e| {
        e.into_api(|reason| match reason {
            AssetRefused::SlugTaken => {
                ApiError::Conflict(format!("slug '{slug}' is already used by another {kind}"))
            }
            AssetRefused::IdTaken => ApiError::Conflict("token collision; retry".into()),
            _ => ApiError::PreconditionFailed(format!(
                "{kind} '{id}' changed since version {version}; read it again"
            )),
        })
    })?;
    Ok(new)
}

/// Deletes the asset and its slug claim.
pub async fn remove<A: Asset>(state: &AppState, asset: &A) -> ApiResult<()> {
    let meta = asset.meta();
    state.store.assets().delete(asset).await.map_err(|e| {
        e.into_api(|_| {
            ApiError::Conflict(format!(
                "{} '{}' was deleted meanwhile",
                A::KIND.name(),
                meta.id
            ))
        })
    })
}

/// `If-Match`: 412 unless it names the asset's current version (`*` matches anything).
/// ETags are `"v<version>-<digest>"`; only the version is compared for writes.
pub fn check_if_match(headers: &HeaderMap, meta: &Meta) -> ApiResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let matches = text
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || etag_version(tag) == Some(meta.version));
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "If-Match {text} does not match the current version {} of '{}'",
            meta.version, meta.id
        )))
    }
}

fn etag_version(tag: &str) -> Option<u64> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
    tag.strip_prefix('v')?.split('-').next()?.parse().ok()
}

/// A 200 envelope with an `ETag` of the version and the body; 304 when `If-None-Match`
/// already names it.
pub fn ok_with_etag(headers: &HeaderMap, version: u64, data: Value) -> Response {
    use sha2::Digest;
    let body = data.to_string();
    let digest = hex::encode(&sha2::Sha256::digest(body.as_bytes())[..6]);
    let etag = format!("\"v{version}-{digest}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // Weak comparison, as RFC 9110 asks of If-None-Match.
            v.split(',')
                .map(|t| t.trim())
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        crate::envelope::ok(data)
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The asset as the API shows it ([`Asset::view`]), as JSON.
pub fn view<A: Asset>(asset: &A) -> ApiResult<Value> {
    Ok(serde_json::to_value(asset.view())?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    pub groups: Vec<ShareRight>,
}

/// Validates share rights: every group must exist in the company.
pub async fn check_share_rights(
    state: &AppState,
    caller: &Caller,
    rights: &[ShareRight],
) -> ApiResult<Vec<ShareRight>> {
    let mut problems = Problems::new();
    let mut out: Vec<ShareRight> = Vec::new();
    for (i, right) in rights.iter().enumerate() {
        let exists = is_id(&right.group_id)
            && state
                .store
                .get::<Value>(keys::group(caller.company_id(), &right.group_id))
                .await?
                .is_some();
        if !exists {
            problems.add(
                format!("groups[{i}].group_id"),
                format!("group '{}' does not exist", right.group_id),
            );
        } else if !out.iter().any(|r| r.group_id == right.group_id) {
            out.push(right.clone());
        }
    }
    problems.check()?;
    Ok(out)
}
