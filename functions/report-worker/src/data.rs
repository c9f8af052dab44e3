//! After a data source's data changed (an append, a replace, a refresh: its item's
//! `data_version` went up, seen in the table's stream): recompute the Klips that use it, off
//! the request path, then merge its appended segments into one copy when there are many.
//!
//! Each Klip's value records the `data_version` it was computed from; the worker skips
//! Klips already at the source's version (a replace recomputed them inline) and never
//! writes a value older than the stored one, so redelivered or reordered records are
//! harmless.

use crate::generate::Outcome;
use domain::asset::Asset;
use domain::records::Datasource;
use platform::assets::{ingest, stored};
use platform::auth::records::Company;
use platform::store::keys;
use platform::{ApiResult, AppState};

/// Recomputes and compacts one data source (as it is now, not as the record showed it).
pub async fn run(state: &AppState, company: &str, datasource: &str) -> Outcome {
    let done = work(state, company, datasource).await;
    // The pass held the source's bytes (megabytes at a large source): give them back.
    platform::memory::release_free();
    match done {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn work(state: &AppState, company: &str, datasource: &str) -> ApiResult<()> {
    let Some(ds) = state
        .store
        .get::<Datasource>(keys::asset(Datasource::KIND, company, datasource))
        .await?
    else {
        return Ok(());
    };
    let (due, owner) = tokio::try_join!(
        stored::due_klips(state, &ds, true),
        state.store.get::<Company>(keys::company(company))
    )?;
    if due.is_empty() && ds.segments.len() < ingest::COMPACT_AT {
        return Ok(());
    }
    let tz = domain::data::timezone(owner.and_then(|c| c.timezone).as_deref());
    // The data is read once, as bytes; every Klip due is computed in one pass over its rows,
    // parsed one at a time.
    let loaded = stored::load(state, &ds).await?;
    stored::store_values(state, &ds, tz, &due, |each| {
        loaded.each_row(each).map(|_| ())
    })
    .await?;
    ingest::compact(state, &ds, &loaded).await?;
    Ok(())
}
