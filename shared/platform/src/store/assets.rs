//! The repository of assets (data sources, Klips, dashboards): each stored with a slug claim
//! (`SLUG#<PREFIX><slug>` → id) written in the same transaction, so slugs are unique per
//! company and kind; saves are conditional on the version read. Also the Klip values
//! derived from data.

use super::StoreError;
use super::{keys, n, to_item, Item, Key, Store, WriteError};
use crate::time::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::asset::Asset;
use domain::klip::KlipValue;
use domain::records::Klip;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy)]
pub struct Assets<'a>(pub(super) &'a Store);

impl Store {
    pub fn assets(&self) -> Assets<'_> {
        Assets(self)
    }
}

/// What a slug claim holds.
#[derive(Serialize, Deserialize)]
pub struct SlugClaim {
    pub id: String,
}

/// What an asset count item holds (see [`keys::asset_count`]).
#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// A lookup item changed together with an asset's save ([`Assets::replace_with`]).
pub enum Lookup {
    /// Create this item; refused when it exists.
    Create(Item),
    /// Delete the item with this key.
    Delete(Key),
}

/// Why an asset was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetRefused {
    /// Another asset of the kind holds the slug.
    SlugTaken,
    /// The id exists already (a collision of random ids).
    IdTaken,
    /// Someone saved the asset since the version that was read.
    Changed,
    /// The asset is gone.
    Gone,
}

/// The item of an asset; one due for background work is also in the `gsi1` due index, one
/// that watches a Klip (an alert) in the `gsi1` partition of that Klip's watchers.
fn asset_item<A: Asset>(asset: &A) -> Result<super::Item, StoreError> {
    let meta = asset.meta();
    let mut item = to_item(&keys::asset(A::KIND, &meta.company_id, &meta.id), asset)?;
    if let Some(due) = asset.due_at() {
        item.insert("gsi1pk".into(), super::s(keys::due_index()));
        item.insert(
            "gsi1sk".into(),
            super::s(format!("{}#{}#{}", rfc3339(due), meta.company_id, meta.id)),
        );
    } else if let Some(klip) = asset.watched_klip() {
        item.insert(
            "gsi1pk".into(),
            super::s(keys::klip_watchers(&meta.company_id, klip)),
        );
        item.insert("gsi1sk".into(), super::s(meta.id.clone()));
    }
    Ok(item)
}

/// The step of an asset's create (`delta` 1) or delete (-1) that keeps its kind's count.
fn count<A: Asset>(
    tx: &mut super::Transaction<'_>,
    company: &str,
    delta: i64,
) -> Result<usize, StoreError> {
    tx.update_named(
        &keys::asset_count(A::KIND, company),
        "ADD #n :delta",
        None,
        &[("#n", "n")],
        vec![(":delta", n(delta))],
    )
}

/// Why [`Assets::append_segment`]'s update failed: the database's error, a data source
/// that is gone, or (its condition failed) what changed since `ds` was read
/// ([`why_refused`], from the old item the failure carries).
fn append_refusal(
    error: aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        aws_smithy_runtime_api::http::Response,
    >,
    ds: &domain::records::Datasource,
    append: &Append<'_>,
    room: i64,
) -> Result<WriteError<AppendRefused>, StoreError> {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    let failed = match error.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
        _ => return Ok(WriteError::Failed(super::db_error("UpdateItem", error))),
    };
    let Some(old) = failed else {
        return Ok(WriteError::Refused(AppendRefused::Gone));
    };
    let old: domain::records::Datasource = super::from_item(old)?;
    Ok(WriteError::Refused(why_refused(&old, ds, append, room)))
}

/// The condition of an append to `ds` (as read): the item is there, points at the same copy,
/// is not disabled, has room, and its raw file ends where it did.
fn append_condition(ds: &domain::records::Datasource) -> String {
    let mut condition = String::from(
        "attribute_exists(pk) AND #data_id = :data_id AND #disabled = :false AND #data_size <= :room",
    );
    condition.push_str(if ds.raw_edge == 0 {
        " AND (attribute_not_exists(#raw_edge) OR #raw_edge = :edge)"
    } else {
        " AND #raw_edge = :edge"
    });
    condition
}

/// Why an append to `ds` (as read) was refused, from the item as it was (`old`).
fn why_refused(
    old: &domain::records::Datasource,
    ds: &domain::records::Datasource,
    append: &Append<'_>,
    room: i64,
) -> AppendRefused {
    if old.disabled {
        AppendRefused::Disabled
    } else if append.if_version.is_some_and(|v| v != old.meta.version) {
        AppendRefused::VersionChanged
    } else if old.data_id != ds.data_id || old.raw_edge != ds.raw_edge {
        AppendRefused::Moved
    } else if old.data_size as i64 > room {
        AppendRefused::TooLarge
    } else {
        AppendRefused::Moved
    }
}

impl Assets<'_> {
    /// The id a slug stands for, if it is claimed.
    pub async fn id_of_slug<A: Asset>(
        &self,
        company: &str,
        slug: &str,
    ) -> Result<Option<String>, StoreError> {
        let claim: Option<SlugClaim> = self.0.get(keys::slug(A::KIND, company, slug)).await?;
        Ok(claim.map(|c| c.id))
    }

    /// Stores a new asset and its slug claim, and counts it.
    pub async fn create<A: Asset>(&self, asset: &A) -> Result<(), WriteError<AssetRefused>> {
        let meta = asset.meta();
        let mut tx = self.0.transaction();
        let item = tx.create_item(asset_item(asset)?)?;
        tx.create(
            &keys::slug(A::KIND, &meta.company_id, &meta.slug),
            &SlugClaim {
                id: meta.id.clone(),
            },
        )?;
        count::<A>(&mut tx, &meta.company_id, 1)?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == item => WriteError::Refused(AssetRefused::IdTaken),
            WriteError::Refused(_) => WriteError::Refused(AssetRefused::SlugTaken),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Replaces `old` with `new` if the stored version is still `old`'s; moves the slug
    /// claim when the slug changed.
    pub async fn replace<A: Asset>(
        &self,
        old: &A,
        new: &A,
    ) -> Result<(), WriteError<AssetRefused>> {
        self.replace_with(old, new, None).await
    }

    /// [`Self::replace`], and in the same transaction the change of a lookup item that
    /// points at the asset (a published link's token), so that neither lands without the
    /// other. A lookup to create that exists already is refused as [`AssetRefused::IdTaken`].
    pub async fn replace_with<A: Asset>(
        &self,
        old: &A,
        new: &A,
        lookup: Option<Lookup>,
    ) -> Result<(), WriteError<AssetRefused>> {
        let (old_meta, meta) = (old.meta(), new.meta());
        let mut tx = self.0.transaction();
        let item = tx.put_item_if(
            asset_item(new)?,
            "attribute_exists(pk) AND #meta.#version = :v",
            &[("#meta", "meta"), ("#version", "version")],
            vec![(":v", n(old_meta.version))],
        )?;
        if meta.slug != old_meta.slug {
            tx.delete(&keys::slug(A::KIND, &meta.company_id, &old_meta.slug))?;
            tx.create(
                &keys::slug(A::KIND, &meta.company_id, &meta.slug),
                &SlugClaim {
                    id: meta.id.clone(),
                },
            )?;
        }
        let created = match lookup {
            Some(Lookup::Create(item)) => Some(tx.create_item(item)?),
            Some(Lookup::Delete(key)) => {
                tx.delete(&key)?;
                None
            }
            None => None,
        };
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == item => WriteError::Refused(AssetRefused::Changed),
            WriteError::Refused(i) if Some(i) == created => {
                WriteError::Refused(AssetRefused::IdTaken)
            }
            WriteError::Refused(_) => WriteError::Refused(AssetRefused::SlugTaken),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// How many assets of the kind the company has, as counted by [`Self::create`] and
    /// [`Self::delete`] (only the whole number when the company's assets were counted since
    /// it was made: [`domain::accounts::Company::assets_counted`]).
    pub async fn count<A: Asset>(&self, company: &str) -> Result<u64, StoreError> {
        let count: Option<Count> = self.0.get(keys::asset_count(A::KIND, company)).await?;
        Ok(count.map_or(0, |c| c.n.max(0) as u64))
    }

    /// The first `max` assets of the kind in the order of their ids (their creation order,
    /// see [`domain::ids::ordered_id`]; newest first when `descending`), read in as few
    /// pages of the database as it takes.
    pub async fn first<A: Asset>(
        &self,
        company: &str,
        max: usize,
        descending: bool,
    ) -> Result<Vec<A>, StoreError> {
        let pk = keys::company_pk(company);
        (self.0)
            .query_prefix_first(&pk, A::KIND.prefix(), max, !descending)
            .await
    }

    /// Deletes the asset and its slug claim; refused when it is already gone.
    pub async fn delete<A: Asset>(&self, asset: &A) -> Result<(), WriteError<AssetRefused>> {
        let meta = asset.meta();
        let mut tx = self.0.transaction();
        tx.delete_existing(&keys::asset(A::KIND, &meta.company_id, &meta.id))?;
        tx.delete(&keys::slug(A::KIND, &meta.company_id, &meta.slug))?;
        count::<A>(&mut tx, &meta.company_id, -1)?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(AssetRefused::Gone),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Stores a Klip's computed value without changing its version (the value is derived
    /// from its data, not an edit); nothing happens when the Klip was deleted meanwhile, or
    /// when the stored value comes from a later version of the data (a slower writer never
    /// puts an older value back).
    pub async fn set_klip_value(&self, klip: &Klip, value: &KlipValue) -> Result<(), StoreError> {
        let item = super::to_attribute("value", value)?;
        let key = keys::asset(Klip::KIND, &klip.meta.company_id, &klip.meta.id);
        match value.data_version {
            Some(version) => self
                .0
                .update_if(
                    &key,
                    "SET #value = :value",
                    "attribute_exists(pk) AND (attribute_not_exists(#value.#dv) OR #value.#dv <= :dv)",
                    &[("#value", "value"), ("#dv", "data_version")],
                    vec![(":value", item), (":dv", n(version))],
                )
                .await
                .map(|_| ()),
            None => self
                .0
                .update_if(
                    &key,
                    "SET #value = :value",
                    "attribute_exists(pk)",
                    &[("#value", "value")],
                    vec![(":value", item)],
                )
                .await
                .map(|_| ()),
        }
    }
}

/// Why an append was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendRefused {
    /// The data was replaced or its end changed since it was read: read it again and retry
    /// (appends themselves commute).
    Moved,
    /// `If-Match` named another version.
    VersionChanged,
    /// The data would grow past the limit.
    TooLarge,
    /// The data source was disabled.
    Disabled,
    /// The data source is gone.
    Gone,
}

/// One append to commit: the segment, and how it changes the file (see
/// `domain::data::appended_size`).
pub struct Append<'a> {
    pub segment: &'a domain::records::Segment,
    pub added_bytes: i64,
    pub edge_after: u64,
    /// `If-Match`: the version the caller insists on.
    pub if_version: Option<u64>,
    pub now: chrono::DateTime<chrono::Utc>,
    pub max_bytes: u64,
}

impl Assets<'_> {
    /// Commits an appended segment with one conditional update of the data source's item:
    /// the segment joins the list, the counts grow, `data_version` and the version go up.
    /// It holds while the item points at the copy `ds` read and its end is as read, so
    /// concurrent appends all succeed (each adds to what is there); answers the saved item.
    pub async fn append_segment(
        &self,
        ds: &domain::records::Datasource,
        append: Append<'_>,
    ) -> Result<domain::records::Datasource, WriteError<AppendRefused>> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        let room = append.max_bytes as i64 - append.added_bytes;
        if room < 0 {
            return Err(WriteError::Refused(AppendRefused::TooLarge));
        }
        let request = self.append_request(ds, &append, room)?;
        match request.send().await {
            Ok(out) => Ok(super::from_item(out.attributes.unwrap_or_default())?),
            Err(e) => Err(append_refusal(e, ds, &append, room)?),
        }
    }

    /// The conditional `UpdateItem` of [`Self::append_segment`]: the segment goes at the end
    /// of the list, the counts, edge, data version, refresh time and meta version move on,
    /// all while [`append_condition`] (and `If-Match`'s version) holds; the new item comes
    /// back, or the old one when the condition failed.
    fn append_request(
        &self,
        ds: &domain::records::Datasource,
        append: &Append<'_>,
        room: i64,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        StoreError,
    > {
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let segment = super::to_attribute("segments", append.segment)?;
        let data_id = ds.data_id.clone().unwrap_or_default();
        let mut condition = append_condition(ds);
        let mut request = self
            .0
            .db
            .update_item()
            .table_name(&self.0.table)
            .set_key(Some(
                keys::asset(
                    domain::records::Datasource::KIND,
                    &ds.meta.company_id,
                    &ds.meta.id,
                )
                .to_item(),
            ))
            .update_expression(
                "SET #segments = list_append(if_not_exists(#segments, :empty), :segment), \
                 #row_count = #row_count + :rows, #data_size = #data_size + :added, \
                 #raw_edge = :edge_after, \
                 #data_version = if_not_exists(#data_version, :zero) + :one, \
                 #refreshed = :now, #meta.#version = #meta.#version + :one, #meta.#updated = :now",
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(v) = append.if_version {
            condition.push_str(" AND #meta.#version = :if_version");
            request = request.expression_attribute_values(":if_version", n(v));
        }
        for (k, v) in [
            ("#segments", "segments"),
            ("#row_count", "row_count"),
            ("#data_size", "data_size"),
            ("#raw_edge", "raw_edge"),
            ("#data_version", "data_version"),
            ("#refreshed", "date_last_refresh"),
            ("#meta", "meta"),
            ("#version", "version"),
            ("#updated", "last_updated"),
            ("#data_id", "data_id"),
            ("#disabled", "disabled"),
        ] {
            request = request.expression_attribute_names(k, v);
        }
        for (k, v) in [
            (":empty", AttributeValue::L(Vec::new())),
            (":segment", AttributeValue::L(vec![segment])),
            (":rows", n(append.segment.rows)),
            (":added", n(append.added_bytes)),
            (":edge_after", n(append.edge_after)),
            (":edge", n(ds.raw_edge)),
            (":zero", n(0)),
            (":one", n(1)),
            (":now", super::t(append.now)),
            (":data_id", super::s(data_id)),
            (":false", AttributeValue::Bool(false)),
            (":room", n(room)),
        ] {
            request = request.expression_attribute_values(k, v);
        }
        Ok(request.condition_expression(condition))
    }

    /// Commits a merge of segments: the item's segments from index `first` on (as `ds` lists
    /// them) become the one segment `merged` (their rows, in order, in one object), they
    /// become `retired_segments`, and the version goes up. Holds only while the copy and
    /// those segments are still the item's (appends made since stay after it); answers
    /// whether it did. The data (rows, file, `data_version`) is the same before and after.
    pub async fn merge_segments(
        &self,
        ds: &domain::records::Datasource,
        first: usize,
        merged: &domain::records::Segment,
    ) -> Result<bool, StoreError> {
        let end = ds.segments.len();
        if end < first + 2 {
            return Ok(false);
        }
        let set = format!("#segments[{first}] = :merged");
        let merged = super::to_attribute("segments", merged)?;
        self.retire_segments(ds, first..end, true, &set, &[], vec![(":merged", merged)])
            .await
    }

    /// Commits a compaction: the item points at `new_data_id` (a copy holding the old copy
    /// and its first `merged` segments), those segments leave the list and become
    /// `retired_segments`, and the version goes up (so a concurrent full save re-reads).
    /// Holds only while the copy and those segments are still the item's; answers whether
    /// it did.
    pub async fn compact_segments(
        &self,
        ds: &domain::records::Datasource,
        new_data_id: &str,
        merged: usize,
    ) -> Result<bool, StoreError> {
        if merged == 0 || merged > ds.segments.len() {
            return Ok(false);
        }
        self.retire_segments(
            ds,
            0..merged,
            false,
            "#data_id = :new, #previous = :copy",
            &[("#previous", "previous_data_id")],
            vec![(":new", super::s(new_data_id))],
        )
        .await
    }

    /// The update both commit: `set` (which may use `:copy`, the current copy), then the
    /// segments of `run` become `retired_segments` and leave the list (but the first of the
    /// run with `set_first`: `set` rewrites it in place), and the version goes up; conditional on the
    /// item still holding the copy and the run's first and last segments.
    async fn retire_segments(
        &self,
        ds: &domain::records::Datasource,
        run: std::ops::Range<usize>,
        set_first: bool,
        set: &str,
        names: &[(&str, &str)],
        mut values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let (Some(first), Some(last)) = (ds.segments.get(run.start), ds.segments.get(run.end - 1))
        else {
            return Ok(false);
        };
        let removed: Vec<String> = run
            .clone()
            .skip(usize::from(set_first))
            .map(|i| format!("#segments[{i}]"))
            .collect();
        let retired: Vec<AttributeValue> = ds.segments[run.clone()]
            .iter()
            .map(|s| super::s(s.id.clone()))
            .collect();
        let expression = format!(
            "SET {set}, #retired = :retired, #meta.#version = #meta.#version + :one REMOVE {}",
            removed.join(", ")
        );
        let condition = format!(
            "#data_id = :copy AND #segments[{}].#id = :first AND #segments[{}].#id = :last",
            run.start,
            run.end - 1
        );
        let mut all_names = vec![
            ("#data_id", "data_id"),
            ("#retired", "retired_segments"),
            ("#meta", "meta"),
            ("#version", "version"),
            ("#segments", "segments"),
            ("#id", "id"),
        ];
        all_names.extend_from_slice(names);
        values.extend([
            (":copy", super::s(ds.data_id.clone().unwrap_or_default())),
            (":retired", AttributeValue::L(retired)),
            (":one", n(1)),
            (":first", super::s(first.id.clone())),
            (":last", super::s(last.id.clone())),
        ]);
        self.0
            .update_if(
                &keys::asset(
                    domain::records::Datasource::KIND,
                    &ds.meta.company_id,
                    &ds.meta.id,
                ),
                &expression,
                &condition,
                &all_names,
                values,
            )
            .await
    }
}

#[cfg(test)]
mod due_index_tests {
    use super::asset_item;
    use domain::reports::Report;

    /// The due index compares its sort keys as text with `<time>#~`: an asset's key starts
    /// with its due time as every stored time is written.
    #[test]
    fn a_due_assets_index_key_starts_with_its_due_time_as_stored() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "meta": {"id": "r", "company_id": "c", "name": "R", "slug": "r", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "format": "html", "next_run_at": "2026-12-03T08:00:00Z"
        }))
        .unwrap();
        let item = asset_item(&report).unwrap();
        assert_eq!(item["gsi1sk"].as_s().unwrap(), "2026-12-03T08:00:00Z#c#r");
    }

    /// An alert is found among its Klip's watchers (one query when the Klip changes).
    #[test]
    fn an_alert_is_indexed_under_the_klip_it_watches() {
        let alert: domain::alerts::Alert = serde_json::from_value(serde_json::json!({
            "meta": {"id": "a", "company_id": "c", "name": "A", "slug": "a", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "klip_id": "k", "condition": {"type": "above", "value": 1}, "channels": ["ch"]
        }))
        .unwrap();
        let item = asset_item(&alert).unwrap();
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "WATCH#c#k");
        assert_eq!(item["gsi1sk"].as_s().unwrap(), "a");
    }
}
