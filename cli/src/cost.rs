//! `make bench`, the cost part: what a million requests of one kind cost on AWS, from what
//! the round-trip bench measured for them (duration, CPU time, DynamoDB read and write units,
//! S3 requests) and the memory `template.yaml` gives the function that serves them.
//!
//! Prices are AWS's public on-demand list prices for us-east-1 (December 2026), written here
//! so that a figure can be recomputed by hand:
//! - Lambda (arm64): $0.20 per million requests, $0.0000133334 per GB-second;
//! - DynamoDB on-demand: $0.625 per million write request units, $0.125 per million read
//!   request units (a transactional write costs two units per KB; the units are the ones
//!   DynamoDB reports for each call);
//! - API Gateway HTTP API: $1.00 per million requests (the first 300 million a month);
//! - S3 Standard: $0.005 per 1,000 PUT, COPY, POST and LIST requests, $0.0004 per 1,000 GET
//!   and other requests (DELETE is free).
//!
//! Billed duration: Lambda gives a function CPU in proportion to its memory, one full vCPU at
//! 1,769 MB. The bench runs on a full core, so a request's billed time is its measured time
//! plus its CPU time stretched by `1769 / MB - 1`, rounded up to the next millisecond.

pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
pub const LAMBDA_GB_SECOND_ARM64: f64 = 0.000_013_333_4;
pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
pub const S3_TIER1_REQUEST: f64 = 0.005 / 1e3;
pub const S3_TIER2_REQUEST: f64 = 0.0004 / 1e3;
/// The memory at which Lambda gives a function one full vCPU.
pub const FULL_VCPU_MB: f64 = 1769.0;

/// What one request of a kind used, on average.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Wall time of the request as measured (p50), in ms.
    pub wall_ms: f64,
    /// CPU time per request on a full core, in ms.
    pub cpu_ms: f64,
    pub memory_mb: f64,
    pub read_units: f64,
    pub write_units: f64,
    pub s3_tier1: f64,
    pub s3_tier2: f64,
}

impl Usage {
    /// The billed duration on Lambda at `memory_mb`, in whole ms.
    pub fn billed_ms(&self) -> f64 {
        let stretch = (FULL_VCPU_MB / self.memory_mb - 1.0).max(0.0);
        (self.wall_ms + self.cpu_ms * stretch).ceil().max(1.0)
    }

    /// Dollars per million requests, through API Gateway's HTTP API.
    pub fn per_million(&self) -> f64 {
        let gb_seconds = self.memory_mb / 1024.0 * self.billed_ms() / 1000.0;
        1e6 * (HTTP_API_REQUEST
            + LAMBDA_REQUEST
            + gb_seconds * LAMBDA_GB_SECOND_ARM64
            + self.read_units * DYNAMODB_READ_UNIT
            + self.write_units * DYNAMODB_WRITE_UNIT
            + self.s3_tier1 * S3_TIER1_REQUEST
            + self.s3_tier2 * S3_TIER2_REQUEST)
    }
}

/// Each function's memory in `template.yaml` (its own `MemorySize`, else the global one).
pub fn function_memory(template: &str) -> Result<std::collections::HashMap<String, f64>, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let global = doc["Globals"]["Function"]["MemorySize"]
        .as_f64()
        .ok_or("template.yaml: no Globals.Function.MemorySize")?;
    let mut out = std::collections::HashMap::new();
    if let Some(resources) = doc["Resources"].as_mapping() {
        for (_, resource) in resources {
            if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() else {
                continue;
            };
            let memory = resource["Properties"]["MemorySize"]
                .as_f64()
                .unwrap_or(global);
            out.insert(binary.to_owned(), memory);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_read_at_128_mb() {
        // 10 ms on a full core, 1 ms of it CPU: billed ceil(10 + 1 * 12.82) = 23 ms.
        let usage = Usage {
            wall_ms: 10.0,
            cpu_ms: 1.0,
            memory_mb: 128.0,
            read_units: 0.5,
            ..Usage::default()
        };
        assert_eq!(usage.billed_ms(), 23.0);
        let expected = 1.00 + 0.20 + 0.125 * 0.023 * 13.3334 + 0.5 * 0.125;
        assert!((usage.per_million() - expected).abs() < 1e-9);
    }

    #[test]
    fn memory_comes_from_the_function_or_the_globals() {
        let template = "Globals:\n  Function:\n    MemorySize: 128\nResources:\n  A:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: a\n    Properties:\n      MemorySize: 512\n  B:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: b\n";
        let memory = function_memory(template).unwrap();
        assert_eq!(memory["a"], 512.0);
        assert_eq!(memory["b"], 128.0);
    }
}
