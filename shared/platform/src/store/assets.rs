//! The repository of assets (data sources, Klips, dashboards): each stored with a slug claim
//! (`SLUG#<PREFIX><slug>` → id) written in the same transaction, so slugs are unique per
//! company and kind; saves are conditional on the version read. Also the Klip values
//! derived from data.

use super::{keys, n, to_item, Store, WriteError};
use crate::error::ApiError;
use domain::asset::Asset;
use domain::klip::KlipValue;
use domain::records::Klip;
use serde::{Deserialize, Serialize};

pub struct Assets<'a>(&'a Store);

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

/// The item of an asset; one due for background work is also in the `gsi1` due index.
fn asset_item<A: Asset>(asset: &A) -> Result<super::Item, ApiError> {
    let meta = asset.meta();
    let mut item = to_item(&keys::asset(A::KIND, &meta.company_id, &meta.id), asset)?;
    if let Some(due) = asset.due_at() {
        item.insert("gsi1pk".into(), super::s(keys::due_index()));
        item.insert(
            "gsi1sk".into(),
            super::s(format!("{due}#{}#{}", meta.company_id, meta.id)),
        );
    }
    Ok(item)
}

impl Assets<'_> {
    /// The id a slug stands for, if it is claimed.
    pub async fn id_of_slug<A: Asset>(
        &self,
        company: &str,
        slug: &str,
    ) -> Result<Option<String>, ApiError> {
        let claim: Option<SlugClaim> = self.0.get(keys::slug(A::KIND, company, slug)).await?;
        Ok(claim.map(|c| c.id))
    }

    /// Stores a new asset and its slug claim.
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
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == item => WriteError::Refused(AssetRefused::Changed),
            WriteError::Refused(_) => WriteError::Refused(AssetRefused::SlugTaken),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Deletes the asset and its slug claim; refused when it is already gone.
    pub async fn delete<A: Asset>(&self, asset: &A) -> Result<(), WriteError<AssetRefused>> {
        let meta = asset.meta();
        let mut tx = self.0.transaction();
        tx.delete_existing(&keys::asset(A::KIND, &meta.company_id, &meta.id))?;
        tx.delete(&keys::slug(A::KIND, &meta.company_id, &meta.slug))?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(AssetRefused::Gone),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Stores a Klip's computed value without changing its version (the value is derived
    /// from its data, not an edit); nothing happens when the Klip was deleted meanwhile.
    pub async fn set_klip_value(&self, klip: &Klip, value: &KlipValue) -> Result<(), ApiError> {
        let item = serde_dynamo::to_attribute_value(value)
            .map_err(|e| ApiError::internal(format!("encoding value: {e}")))?;
        self.0
            .update_if(
                &keys::asset(Klip::KIND, &klip.meta.company_id, &klip.meta.id),
                "SET #value = :value",
                "attribute_exists(pk)",
                &[("#value", "value")],
                vec![(":value", item)],
            )
            .await
            .map(|_| ())
    }
}
