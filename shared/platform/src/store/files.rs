//! The repository of files in the bucket (data source data copies today). S3 failures are
//! reported as the storage being unavailable (503), like the database's.

use super::Store;
use super::StoreError;

#[derive(Clone, Copy)]
pub struct Files<'a>(&'a Store);

/// One file of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    /// When it was last written (as the storage reports it).
    pub written: Option<chrono::DateTime<chrono::Utc>>,
}

impl Store {
    pub fn files(&self) -> Files<'_> {
        Files(self)
    }
}

/// Where the file of run `run` of report `report` is kept (`extension`: its format's).
pub fn report_key(company: &str, report: &str, run: &str, extension: &str) -> String {
    super::keys::report_file(company, report, run, extension)
}

/// Maps an S3 failure like [`super::db_error`] maps DynamoDB's, naming the file storage.
fn s3_error<E, R>(operation: &str, err: aws_sdk_s3::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    super::service_error("file storage", operation, err)
}

impl Files<'_> {
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.0
            .s3
            .put_object()
            .bucket(&self.0.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PutObject", e))
    }

    /// The file's bytes, or `None` when there is no such file.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_reserving(key, 0).await
    }

    /// [`Files::get`] into a buffer with room for `extra` more bytes, so the caller can grow
    /// the file in place. The body is read chunk by chunk into one buffer of its announced
    /// size: never two copies of the file at once.
    pub async fn get_reserving(
        &self,
        key: &str,
        extra: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .0
            .s3
            .get_object()
            .bucket(&self.0.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(mut out) => {
                let size = (out.content_length.unwrap_or(0).max(0) as usize).min(64 << 20);
                let mut bytes = Vec::with_capacity(size + extra);
                while let Some(chunk) =
                    out.body
                        .try_next()
                        .await
                        .map_err(|e| StoreError::Unavailable {
                            message: format!("reading data: {e}"),
                            source: Some(e.into()),
                        })?
                {
                    bytes.extend_from_slice(&chunk);
                }
                Ok(Some(bytes))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_error("GetObject", e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .s3
            .delete_object()
            .bucket(&self.0.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error("DeleteObject", e))
    }

    /// The keys of every file under `prefix` (the first 1,000).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self
            .0
            .s3
            .list_objects_v2()
            .bucket(&self.0.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| s3_error("ListObjectsV2", e))?;
        Ok(listed
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect())
    }

    /// Up to `max` files under `prefix` whose keys come after `after`, in key order, with
    /// when each was last written, and the key to continue after when there are more.
    pub async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: i32,
    ) -> Result<(Vec<Listed>, Option<String>), StoreError> {
        let listed = self
            .0
            .s3
            .list_objects_v2()
            .bucket(&self.0.bucket)
            .prefix(prefix)
            .set_start_after(after.map(str::to_owned))
            .max_keys(max)
            .send()
            .await
            .map_err(|e| s3_error("ListObjectsV2", e))?;
        let files: Vec<Listed> = listed
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                let written = o
                    .last_modified
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                Some(Listed {
                    key: o.key?,
                    written,
                })
            })
            .collect();
        let next = if listed.is_truncated == Some(true) {
            files.last().map(|f| f.key.clone())
        } else {
            None
        };
        Ok((files, next))
    }

    /// A URL that reads the file without credentials until `expires_in` has passed.
    pub async fn presigned_get(
        &self,
        key: &str,
        file_name: &str,
        expires_in: std::time::Duration,
    ) -> Result<String, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| StoreError::failed("presigning", e))?;
        let request = self
            .0
            .s3
            .get_object()
            .bucket(&self.0.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{file_name}\""))
            .presigned(config)
            .await
            .map_err(|e| s3_error("GetObject", e))?;
        Ok(request.uri().to_owned())
    }
}
