//! The one table (and bucket) definition that `pulseboard create-table` creates. A test reads
//! `template.yaml` and fails when the two drift apart.

use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
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
    let request = create_request(db, name, &def)?;
    if !send_create(request, name).await? {
        return Ok(false);
    }
    enable_ttl(db, name, &def).await?;
    if def.point_in_time_recovery {
        enable_point_in_time_recovery(db, name).await?;
    }
    Ok(true)
}

/// The CreateTable request: keys, billing, the stream and the indexes of the definition.
fn create_request(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
    def: &TableDefinition,
) -> Result<CreateTableFluentBuilder, String> {
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
            .global_secondary_indexes(index_definition(index, hash, range)?);
    }
    Ok(request)
}

/// A global secondary index projecting everything.
fn index_definition(index: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, String> {
    GlobalSecondaryIndex::builder()
        .index_name(index)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| e.to_string())
}

/// Sends CreateTable; answers false when another process created the table first.
async fn send_create(request: CreateTableFluentBuilder, name: &str) -> Result<bool, String> {
    match request.send().await {
        Ok(_) => Ok(true),
        // Another process (a parallel test binary) created it first.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(format!(
            "CreateTable {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
        )),
    }
}

/// Turns on expiry by the definition's TTL attribute.
async fn enable_ttl(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
    def: &TableDefinition,
) -> Result<(), String> {
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
    Ok(())
}

/// Turns on point-in-time recovery where the store implements it (only logged otherwise).
async fn enable_point_in_time_recovery(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), String> {
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
    Ok(())
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
