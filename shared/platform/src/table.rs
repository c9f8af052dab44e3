//! The one table (and bucket) definition that `pulseboard create-table` creates. A test reads
//! `template.yaml` and fails when the two drift apart.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

/// The table as data, so both `create-table` and the drift test read the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub hash_key: &'static str,
    pub range_key: &'static str,
    /// (index name, hash key, range key); projection ALL.
    pub indexes: Vec<(&'static str, &'static str, &'static str)>,
    pub stream_view: &'static str,
    pub ttl_attribute: &'static str,
    pub billing_mode: &'static str,
    pub point_in_time_recovery: bool,
}

pub fn definition() -> TableDefinition {
    TableDefinition {
        hash_key: "pk",
        range_key: "sk",
        indexes: vec![("gsi1", "gsi1pk", "gsi1sk")],
        stream_view: "NEW_AND_OLD_IMAGES",
        ttl_attribute: "ttl",
        billing_mode: "PAY_PER_REQUEST",
        point_in_time_recovery: true,
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, String> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| e.to_string())
}

fn attribute(name: &str) -> Result<AttributeDefinition, String> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| e.to_string())
}

/// Creates the table if it does not exist; answers whether it created it.
pub async fn create_table(db: &aws_sdk_dynamodb::Client, name: &str) -> Result<bool, String> {
    let def = definition();
    if db.describe_table().table_name(name).send().await.is_ok() {
        return Ok(false);
    }
    let mut request = db
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(def.billing_mode))
        .key_schema(key(def.hash_key, KeyType::Hash)?)
        .key_schema(key(def.range_key, KeyType::Range)?)
        .attribute_definitions(attribute(def.hash_key)?)
        .attribute_definitions(attribute(def.range_key)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(def.stream_view))
                .build()
                .map_err(|e| e.to_string())?,
        );
    for (index, hash, range) in &def.indexes {
        request = request
            .attribute_definitions(attribute(hash)?)
            .attribute_definitions(attribute(range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .key_schema(key(hash, KeyType::Hash)?)
                    .key_schema(key(range, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| e.to_string())?,
            );
    }
    match request.send().await {
        Ok(_) => {}
        // Another process (a parallel test binary) created it first.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(false)
        }
        Err(e) => {
            return Err(format!(
                "CreateTable {name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            ))
        }
    }
    db.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(def.ttl_attribute)
                .enabled(true)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| {
            format!(
                "UpdateTimeToLive {name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        })?;
    if def.point_in_time_recovery {
        let pitr = aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        if let Err(e) = db
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(pitr)
            .send()
            .await
        {
            // DynamoDB Local does not implement backups; AWS does.
            tracing::info!(error = %crate::store::short_error(&e), "point-in-time recovery not enabled");
        }
    }
    Ok(true)
}

/// Creates the bucket if it does not exist; answers whether it created it.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<bool, String> {
    if s3.head_bucket().bucket(name).send().await.is_ok() {
        return Ok(false);
    }
    match s3.create_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                .unwrap_or_default()
                .to_owned();
            if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
                Ok(false)
            } else {
                Err(format!(
                    "CreateBucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ))
            }
        }
    }
}
