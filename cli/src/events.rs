//! Local event delivery, the way Lambda does it on AWS: the table's **stream** is read
//! (`DescribeStream`, `GetShardIterator`, `GetRecords` against DynamoDB Local), each record
//! (already in the DynamoDB JSON Lambda sends) filtered with the event source mapping's
//! filter and handed to its consumer in small batches — the report worker and the audit
//! recorder, each reading the stream on its own as their two event source mappings do; the
//! batch item failures a consumer answers are delivered to it again (a bounded number of
//! times). A **tick** is sent to the worker every `--tick-seconds`, as the EventBridge
//! schedule does.

use platform::AppState;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Records per worker invocation (the template's `BatchSize`).
pub const BATCH_SIZE: usize = 25;
/// How many times a failed record is delivered again (the template's
/// `MaximumRetryAttempts`).
pub const MAX_RETRIES: u32 = 5;

/// A consumer of the table's stream (an event source mapping of its own on AWS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumer {
    ReportWorker,
    AuditRecorder,
}

impl Consumer {
    fn passes(self, record: &aws_lambda_events::event::dynamodb::EventRecord) -> bool {
        match self {
            Consumer::ReportWorker => pulseboard_report_worker::stream::passes_filter(record),
            Consumer::AuditRecorder => pulseboard_audit_recorder::passes_filter(record),
        }
    }

    async fn handle(self, state: &AppState, event: Value) -> Result<Value, String> {
        match self {
            Consumer::ReportWorker => pulseboard_report_worker::handle(state, event)
                .await
                .map_err(|e| e.to_string()),
            Consumer::AuditRecorder => pulseboard_audit_recorder::handle(state, event).await,
        }
    }
}

/// The DynamoDB Streams API of the local endpoint, spoken as JSON over HTTP: its records
/// come back in exactly the DynamoDB JSON that Lambda puts in its events. (DynamoDB Local
/// checks that requests carry credentials, not their signature.)
struct Streams {
    http: reqwest::Client,
    endpoint: String,
    authorization: String,
}

impl Streams {
    fn from_env() -> Option<Self> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL_DYNAMODB"))
            .ok()?;
        let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "pulseboard".into());
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Some(Streams {
            http: reqwest::Client::new(),
            endpoint,
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={key}/20260101/{region}/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0"
            ),
        })
    }

    async fn call(&self, operation: &str, body: Value) -> Result<Value, String> {
        let text = self.call_text(operation, body).await?;
        serde_json::from_str(&text).map_err(|e| format!("{operation}: {e}"))
    }

    /// [`Streams::call`]'s answer as the text received.
    async fn call_text(&self, operation: &str, body: Value) -> Result<String, String> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "x-amz-target",
                format!("DynamoDBStreams_20120810.{operation}"),
            )
            .header("x-amz-date", "20260101T000000Z")
            .header("authorization", &self.authorization)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{operation}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{operation}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{operation}: {status} {text}"));
        }
        Ok(text)
    }
}

/// A `GetRecords` answer with each record left as its text: a read brings up to 1,000
/// records, both images of every item the table changed (rate counters included), and
/// parsing them all at once held megabytes of JSON trees in the process it serves (Lambda's
/// poller holds them outside the function). Each is parsed, filtered and dropped in turn.
#[derive(serde::Deserialize)]
struct RecordsPage<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Vec<&'a serde_json::value::RawValue>,
    #[serde(rename = "NextShardIterator")]
    next: Option<String>,
}

/// A record that passed the filter, waiting for the worker: kept as its (compact) text, not
/// a JSON tree, so a page with hundreds of passing records (a busy data source: each append
/// changes its item) does not hold tens of megabytes in the process it serves; each batch
/// is parsed just before the worker gets it.
struct Pending {
    sequence: String,
    text: String,
    tries: u32,
}

/// The records of a page that pass the event source mapping's filter, as Lambda sends them.
fn passing_records(page: &RecordsPage, arn: &str, consumer: Consumer) -> Vec<Pending> {
    let mut passing = Vec::new();
    for raw in &page.records {
        let Ok(mut lambda) = serde_json::from_str::<Value>(raw.get()) else {
            tracing::warn!("an unreadable stream record: skipped");
            continue;
        };
        lambda["eventSourceARN"] = json!(arn);
        for image in ["Keys", "NewImage", "OldImage"] {
            if let Some(Value::Object(item)) = lambda["dynamodb"].get_mut(image) {
                item.values_mut().for_each(normalize);
            }
        }
        if passes(&lambda, consumer) {
            passing.push(Pending {
                sequence: lambda["dynamodb"]["SequenceNumber"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                text: lambda.to_string(),
                tries: 0,
            });
        }
    }
    passing
}

/// DynamoDB Local writes an empty map attribute as `{}` in stream records, where DynamoDB
/// (and so Lambda's event) has `{"M":{}}`: make every attribute value the real shape.
fn normalize(value: &mut Value) {
    let Value::Object(typed) = value else {
        return;
    };
    if typed.is_empty() {
        typed.insert("M".into(), json!({}));
        return;
    }
    if let Some(Value::Object(map)) = typed.get_mut("M") {
        map.values_mut().for_each(normalize);
    } else if let Some(Value::Array(list)) = typed.get_mut("L") {
        list.iter_mut().for_each(normalize);
    }
}

/// Whether a Lambda-shaped record passes the event source mapping's filter.
fn passes(record: &Value, consumer: Consumer) -> bool {
    serde_json::from_value::<aws_lambda_events::event::dynamodb::EventRecord>(record.clone())
        .is_ok_and(|r| consumer.passes(&r))
}

/// The table's stream ARN, asked for again every second until the table answers; `None`
/// (with a warning) when the table has no stream.
async fn stream_arn(state: &AppState) -> Option<String> {
    loop {
        match state.store.stream_arn().await {
            Ok(Some(arn)) => break Some(arn),
            Ok(None) => {
                tracing::warn!("the table has no stream; reports will not be generated");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the table's stream");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Where the delivery is in the stream `arn`: each open shard's next iterator, the shards
/// read to their end, and when the shards were last listed.
struct Reader {
    streams: Streams,
    arn: String,
    consumer: Consumer,
    iterators: HashMap<String, String>,
    finished: HashSet<String>,
    last_describe: Option<std::time::Instant>,
}

impl Reader {
    fn new(streams: Streams, arn: String, consumer: Consumer) -> Reader {
        Reader {
            streams,
            arn,
            consumer,
            iterators: HashMap::new(),
            finished: HashSet::new(),
            last_describe: None,
        }
    }

    /// New shards (DynamoDB rolls them over): read each from its start. The shards are
    /// listed at most every 2 s, and at once after one closed.
    async fn find_new_shards(&mut self) {
        let listed_lately = self
            .last_describe
            .is_some_and(|t| t.elapsed() <= Duration::from_secs(2));
        if listed_lately {
            return;
        }
        self.last_describe = Some(std::time::Instant::now());
        match self
            .streams
            .call("DescribeStream", json!({"StreamArn": self.arn}))
            .await
        {
            Ok(described) => {
                let shards = described["StreamDescription"]["Shards"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for shard in shards {
                    if let Some(id) = shard["ShardId"].as_str() {
                        self.open_shard(id).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the stream"),
        }
    }

    /// Gets an iterator at the start of the shard `id`, unless it is open or finished.
    async fn open_shard(&mut self, id: &str) {
        if self.iterators.contains_key(id) || self.finished.contains(id) {
            return;
        }
        let got = self
            .streams
            .call(
                "GetShardIterator",
                json!({"StreamArn": self.arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"}),
            )
            .await;
        match got {
            Ok(out) => {
                if let Some(it) = out["ShardIterator"].as_str() {
                    self.iterators.insert(id.to_owned(), it.to_owned());
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the stream"),
        }
    }

    /// Reads one page of every open shard into `batch` (the records that pass the filter),
    /// and moves each shard's iterator on.
    async fn read_pages(&mut self, batch: &mut Vec<Pending>) {
        for (shard, iterator) in self.iterators.clone() {
            let page = self
                .streams
                .call_text("GetRecords", json!({"ShardIterator": iterator}))
                .await
                .and_then(|text| {
                    let page: RecordsPage =
                        serde_json::from_str(&text).map_err(|e| format!("GetRecords: {e}"))?;
                    Ok((passing_records(&page, &self.arn, self.consumer), page.next))
                });
            match page {
                Ok((passing, next)) => {
                    batch.extend(passing);
                    match next {
                        Some(next) => {
                            self.iterators.insert(shard, next);
                        }
                        None => {
                            // A closed shard: its child is read from the next round on,
                            // not after the next 2 s describe (records would wait for it).
                            self.iterators.remove(&shard);
                            self.finished.insert(shard);
                            self.last_describe = None;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the stream");
                    self.iterators.remove(&shard);
                }
            }
        }
    }
}

/// Hands `chunk` to `consumer` as one invocation; answers the records it failed that may be
/// delivered again (tried fewer than `MAX_RETRIES` more times).
async fn deliver(state: &AppState, consumer: Consumer, chunk: &[Pending]) -> Vec<Pending> {
    let records: Vec<Value> = chunk
        .iter()
        .filter_map(|p| serde_json::from_str(&p.text).ok())
        .collect();
    let failed: HashSet<&str> = match consumer.handle(state, json!({ "Records": records })).await {
        Ok(answer) => {
            let named: HashSet<String> = answer["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            chunk
                .iter()
                .filter(|p| named.contains(&p.sequence))
                .map(|p| p.sequence.as_str())
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, ?consumer, "a stream consumer failed a whole batch");
            chunk.iter().map(|p| p.sequence.as_str()).collect()
        }
    };
    chunk
        .iter()
        .filter(|p| failed.contains(p.sequence.as_str()) && p.tries < MAX_RETRIES)
        .map(|p| Pending {
            sequence: p.sequence.clone(),
            text: p.text.clone(),
            tries: p.tries + 1,
        })
        .collect()
}

/// Delivers the table's stream to the report worker and to the audit recorder (each reading
/// it on its own) until the task is dropped.
pub async fn deliver_stream(state: AppState) {
    tokio::join!(
        deliver_stream_to(state.clone(), Consumer::ReportWorker),
        deliver_stream_to(state, Consumer::AuditRecorder)
    );
}

/// Delivers the table's stream to `consumer` until the task is dropped.
pub async fn deliver_stream_to(state: AppState, consumer: Consumer) {
    let Some(streams) = Streams::from_env() else {
        tracing::warn!("no local DynamoDB endpoint: the stream is not delivered");
        return;
    };
    let Some(arn) = stream_arn(&state).await else {
        return;
    };
    let mut reader = Reader::new(streams, arn, consumer);
    let mut retries: Vec<Pending> = Vec::new();
    loop {
        reader.find_new_shards().await;
        let mut batch: Vec<Pending> = std::mem::take(&mut retries);
        reader.read_pages(&mut batch).await;
        for chunk in batch.chunks(BATCH_SIZE) {
            retries.extend(deliver(&state, consumer, chunk).await);
        }
        // As Lambda's poller: every 250 ms while the stream is quiet, straight on while
        // records come (a pass that goes on from the last one is cheap), 1 s before a retry.
        let pause = match (retries.is_empty(), batch.is_empty()) {
            (false, _) => 1000,
            (true, true) => 250,
            (true, false) => 0,
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Sends the worker a scheduler tick every `period` until the task is dropped.
pub async fn tick_every(state: AppState, period: Duration) {
    let input: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT)
        .unwrap_or_else(|_| json!({"tick": true}));
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = pulseboard_report_worker::handle(&state, input.clone()).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
    }
}
