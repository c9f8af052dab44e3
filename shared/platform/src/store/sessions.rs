//! The repository of login sessions: refresh tokens (single use) and their families.

use super::StoreError;
use super::{keys, Store, WriteError};
use crate::auth::records::{FamilyRecord, RefreshRecord};
use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Clone, Copy)]
pub struct RefreshTokens<'a>(pub(super) &'a Store);

impl Store {
    pub fn refresh_tokens(&self) -> RefreshTokens<'_> {
        RefreshTokens(self)
    }
}

/// Why a refresh token could not be spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotConsumed {
    /// It was spent before: a replay, so its family must go.
    Reused {
        family: String,
    },
    Revoked,
    /// Never issued.
    Unknown,
}

impl RefreshTokens<'_> {
    /// A login: the first refresh token and its family.
    pub async fn start_family(
        &self,
        token: &RefreshRecord,
        family: &FamilyRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.0.transaction();
        tx.create(&keys::refresh(&token.jti), token)?;
        tx.create(&keys::family(&family.family), family)?;
        tx.commit_or_conflict("token collision; retry").await
    }

    /// The next refresh token of a family.
    pub async fn add(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        self.0
            .create(&keys::refresh(&token.jti), token, "token collision; retry")
            .await
    }

    /// Marks a refresh token used, once: a second use is refused as a reuse.
    pub async fn consume(&self, jti: &str) -> Result<(), WriteError<NotConsumed>> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let store = self.0;
        let result = store
            .db
            .update_item()
            .table_name(&store.table)
            .set_key(Some(keys::refresh(jti).to_item()))
            .update_expression("SET used = :t")
            .condition_expression("attribute_exists(pk) AND used = :f AND revoked = :f")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let old: Option<RefreshRecord> =
                        failed.item.clone().and_then(|i| super::from_item(i).ok());
                    Err(WriteError::Refused(match old {
                        Some(old) if old.used && !old.revoked => {
                            NotConsumed::Reused { family: old.family }
                        }
                        Some(_) => NotConsumed::Revoked,
                        None => NotConsumed::Unknown,
                    }))
                }
                _ => Err(WriteError::Failed(super::db_error("UpdateItem", e))),
            },
        }
    }

    /// Revokes one refresh token; answers whether it existed.
    pub async fn revoke(&self, jti: &str) -> Result<bool, StoreError> {
        self.0
            .update_if(
                &keys::refresh(jti),
                "SET revoked = :t",
                "attribute_exists(pk)",
                &[],
                vec![(":t", AttributeValue::Bool(true))],
            )
            .await
    }

    /// Revokes every refresh token of a family (nothing happens when it is unknown).
    pub async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::family(family),
                "SET revoked = :t",
                "attribute_exists(pk)",
                &[],
                vec![(":t", AttributeValue::Bool(true))],
            )
            .await
            .map(|_| ())
    }
}
