//! The yardstick of `make bench`'s cold start (see src/cold_bench.rs): a bare GetItem
//! function, like aws-samples/serverless-rust-demo's `get-product`, built with the same
//! release profile as the functions. At init it loads the SDK's configuration and makes the
//! DynamoDB client (with the same HTTPS client as every Pulseboard function); each request
//! is one `GetItem` of the item `BARE_PK`/`BARE_SK` of `TABLE_NAME`, answered as JSON. No
//! authentication, no limits, no logging.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = platform::store::sdk_config().await;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (table, pk, sk) = (var("TABLE_NAME"), var("BARE_PK"), var("BARE_SK"));
    run(service_fn(|_: Request| {
        let get = db
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S(sk.clone()));
        async move {
            let item = get.send().await?.item.unwrap_or_default();
            let fields: serde_json::Map<String, serde_json::Value> = item
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        AttributeValue::S(s) | AttributeValue::N(s) => s,
                        other => format!("{other:?}"),
                    };
                    (name, serde_json::Value::String(text))
                })
                .collect();
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::Value::Object(fields).to_string()))
                .map_err(Error::from)
        }
    }))
    .await
}
