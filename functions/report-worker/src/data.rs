//! After a data source's data changed (an append, a replace, a refresh: its item's
//! `data_version` went up, seen in the table's stream): recompute the Klips that use it, off
//! the request path, each Klip going on from where the last pass left it (see
//! `stored::Pass`); then, at 8 segments, merge some (`ingest::plan_merge`): the newest among
//! themselves, or all into a new copy once they hold half as many rows as it.
//!
//! Each Klip's value records the `data_version` it was computed from; the worker skips
//! Klips already at the source's version (a replace recomputed them inline) and never
//! writes a value older than the stored one, so redelivered or reordered records are
//! harmless.

use crate::error::WorkError;
use crate::generate::Outcome;
use domain::records::Datasource;
use platform::assets::ingest::{self, Merge};
use platform::assets::stored;
use platform::store::OrApiError;
use platform::AppState;

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

async fn work(state: &AppState, company: &str, datasource: &str) -> Result<(), WorkError> {
    let Some(ds) = state
        .store
        .assets()
        .get::<Datasource>(company, datasource)
        .await?
    else {
        return Ok(());
    };
    let (using, owner, progress) = tokio::try_join!(
        stored::klips_using(state, &ds),
        state.store.companies().get(company).api(),
        stored::read_progress(state, &ds),
    )?;
    let merge = ingest::plan_merge(&ds);
    let due: Vec<_> = using
        .iter()
        .filter(|k| stored::is_due(k, &ds))
        .cloned()
        .collect();
    if due.is_empty() && merge == Merge::Nothing {
        return Ok(());
    }
    let tz = domain::data::timezone(owner.and_then(|c| c.timezone).as_deref());
    // Each Klip due goes on from where the last pass left it when it can, so usually only
    // the segments appended since are read; all due Klips share one pass over the rows,
    // parsed one at a time. A compaction into the copy reads every row anyway.
    let started = std::time::Instant::now();
    let mut pass = stored::Pass::plan(&ds, tz, state.clock.now(), &due, &progress);
    let from = pass.from(&ds);
    let all = match merge {
        Merge::IntoCopy => Some(stored::load_for_merge(state, &ds).await?),
        _ => None,
    };
    match &all {
        Some(loaded) => pass.feed(loaded)?,
        None => match stored::load_after(state, &ds, from).await? {
            Some(after) => pass.feed(&after)?,
            None => pass.feed(&stored::load(state, &ds).await?)?,
        },
    }
    let keep: Vec<String> = using.iter().map(|k| k.meta.id.clone()).collect();
    pass.store(state, &ds, &keep, progress).await?;
    let computed_ms = started.elapsed().as_millis() as u64;
    match (merge, all) {
        (Merge::IntoCopy, Some(loaded)) => {
            ingest::compact(state, &ds, loaded).await?;
        }
        (Merge::Segments(first), _) => {
            ingest::merge_segments(state, &ds, first).await?;
        }
        _ => {}
    }
    tracing::info!(
        datasource,
        klips = due.len(),
        rows = ds.row_count,
        from,
        ?merge,
        computed_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "data pass"
    );
    Ok(())
}
