//! `template.yaml` routes every declared route to the function that declares it: each
//! route's path (in its canonical form, under `/api/1.0/`, and in the aliases the edge
//! rewrites) is matched against the template's HttpApi events the way API Gateway HTTP APIs
//! pick a route (the most specific one: literal segments before `{variables}` before a
//! greedy `{proxy+}`), and the function whose event wins must be the one that declares the
//! route. No event of the template leads to a function that serves nothing under it.

use pulseboard_cli::FUNCTIONS;
use serde_yaml::Value;

/// One HttpApi event: the binary of its function and its path (`None` for `$default`).
struct Event {
    binary: String,
    path: Option<String>,
}

fn events() -> Vec<Event> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("every function names its Binary")
            .to_owned();
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            if let Some(method) = properties["Method"].as_str() {
                assert_eq!(
                    method, "ANY",
                    "{binary}: methods are the function's business"
                );
            }
            out.push(Event {
                binary: binary.clone(),
                path: properties["Path"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// How specifically `pattern` matches `path`: one rank per segment (0 literal, 1 variable,
/// 2 greedy), or `None` when it does not match.
fn specificity(pattern: &str, path: &str) -> Option<Vec<u8>> {
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut ranks = Vec::new();
    for (i, segment) in pattern.iter().enumerate() {
        if segment.ends_with("+}") {
            return (path.len() > i).then(|| {
                ranks.push(2);
                ranks
            });
        }
        let actual = path.get(i)?;
        if segment.starts_with('{') {
            ranks.push(1);
        } else if segment == actual {
            ranks.push(0);
        } else {
            return None;
        }
    }
    (pattern.len() == path.len()).then_some(ranks)
}

/// The binary of the most specific `(pattern, binary)` that matches `path`, if any.
fn most_specific<'a>(
    table: impl Iterator<Item = (&'a str, &'a str)>,
    path: &str,
) -> Option<&'a str> {
    table
        .filter_map(|(pattern, binary)| Some((specificity(pattern, path)?, binary)))
        .min_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, binary)| binary)
}

/// The binary API Gateway sends `path` to.
fn routed_to<'a>(events: &'a [Event], path: &str) -> &'a str {
    let table = events
        .iter()
        .filter_map(|e| Some((e.path.as_deref()?, e.binary.as_str())));
    most_specific(table, path).unwrap_or_else(|| {
        events
            .iter()
            .find(|e| e.path.is_none())
            .map(|e| e.binary.as_str())
            .expect("a $default route")
    })
}

/// The request paths a caller may use for a declared route (API.md §1 addressing).
fn spellings(route_path: &str) -> Vec<String> {
    let id = "0123456789abcdef0123456789abcdef";
    let concrete = route_path
        .split('/')
        .map(|s| if s.starts_with('{') { id } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let mut out = vec![format!("/api/v1{concrete}"), format!("/api/1.0{concrete}")];
    if let Some(rest) = concrete.strip_prefix("/auth/") {
        out.push(format!("/api/auth/{rest}"));
    }
    for (alias, canonical) in [("tabs", "dashboards"), ("data-sources", "datasources")] {
        if let Some(rest) = concrete.strip_prefix(&format!("/{canonical}")) {
            out.push(format!("/api/v1/{alias}{rest}"));
        }
    }
    // `{collection}/{id}/@/{operation}`.
    let segments: Vec<&str> = concrete.trim_start_matches('/').split('/').collect();
    if segments.len() >= 3 && segments[1] == id {
        let mut with_at = segments.clone();
        with_at.insert(2, "@");
        out.push(format!("/api/v1/{}", with_at.join("/")));
    }
    out
}

#[test]
fn the_template_routes_every_declared_route_to_its_own_function() {
    let events = events();
    let mut checked = 0;
    for function in FUNCTIONS {
        for route in (function.routes)() {
            for path in spellings(route.path) {
                assert_eq!(
                    routed_to(&events, &path),
                    function.name,
                    "{} {} (as {path}) is declared by {} but template.yaml routes it elsewhere",
                    route.method,
                    route.path,
                    function.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

#[test]
fn every_event_of_the_template_leads_to_routes_of_its_function() {
    for event in events() {
        let function = FUNCTIONS
            .iter()
            .find(|f| f.name == event.binary)
            .unwrap_or_else(|| {
                panic!(
                    "template function {} is not a workspace function",
                    event.binary
                )
            });
        let Some(path) = event.path else {
            assert_eq!(
                event.binary, "auth",
                "the $default route answers unknown paths"
            );
            continue;
        };
        let served = (function.routes)().iter().any(|route| {
            spellings(route.path)
                .iter()
                .any(|p| specificity(&path, p).is_some())
        });
        assert!(
            served,
            "{}: template path {path} leads to no route of the function",
            event.binary
        );
    }
}

#[test]
fn the_report_workers_triggers_are_the_ones_the_code_expects() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let events = &template["Resources"]["ReportWorkerFunction"]["Properties"]["Events"];
    let stream = &events["QueuedRuns"]["Properties"];
    let patterns: Vec<&str> = stream["FilterCriteria"]["Filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f["Pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        patterns,
        pulseboard_report_worker::stream::FILTER_PATTERNS,
        "the stream filters in template.yaml and the worker's filters differ"
    );
    assert_eq!(
        stream["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(
        stream["BatchSize"].as_u64(),
        Some(pulseboard_cli::events::BATCH_SIZE as u64)
    );
    assert_eq!(
        stream["MaximumRetryAttempts"].as_u64(),
        Some(u64::from(pulseboard_cli::events::MAX_RETRIES))
    );
    assert_eq!(
        events["SchedulerTick"]["Properties"]["Input"].as_str(),
        Some(pulseboard_report_worker::TICK_INPUT)
    );
}

/// Every HTTP function answers before its Lambda timeout: its request deadline leaves at
/// least a second for the 503, and the database gives up (6 s) before the deadline.
#[test]
fn every_functions_request_deadline_fits_inside_its_timeout() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let global = &template["Globals"]["Function"];
    let number = |v: &Value| -> Option<f64> {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let mut checked = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function")
            || resource["Properties"]["Events"]
                .as_mapping()
                .is_none_or(|events| events.values().all(|e| e["Type"] != "HttpApi"))
        {
            continue;
        }
        let props = &resource["Properties"];
        let timeout = number(&props["Timeout"])
            .or_else(|| number(&global["Timeout"]))
            .unwrap();
        let deadline_ms = number(&props["Environment"]["Variables"]["REQUEST_DEADLINE_MS"])
            .or_else(|| number(&global["Environment"]["Variables"]["REQUEST_DEADLINE_MS"]))
            .unwrap_or(platform::http::DEFAULT_DEADLINE.as_millis() as f64);
        let deadline = deadline_ms / 1000.0;
        assert!(
            deadline + 1.0 <= timeout,
            "{name:?}: deadline {deadline} s, timeout {timeout} s"
        );
        assert!(
            6.0 < deadline,
            "{name:?}: the database timeout must end first"
        );
        checked += 1;
    }
    assert!(checked >= 7, "{checked} HTTP functions");
}

/// `cargo lambda watch`'s router table (`[workspace.metadata.lambda.watch.router]` in the
/// workspace's Cargo.toml, read through `cargo metadata`), as (path, binary) with matchit's
/// `{*proxy}` written the API Gateway way, `{proxy+}`.
fn watch_router() -> Vec<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let router = metadata["metadata"]["lambda"]["watch"]["router"]
        .as_object()
        .expect("Cargo.toml has [workspace.metadata.lambda.watch.router]");
    router
        .iter()
        .map(|(path, function)| {
            let function = function
                .as_str()
                .expect("each path goes to one function, whatever the method");
            (path.replace("{*proxy}", "{proxy+}"), function.to_owned())
        })
        .collect()
}

#[test]
fn cargo_lambda_watch_routes_every_declared_route_to_its_own_function() {
    let watch = watch_router();
    // matchit ranks as API Gateway does (literal, then `{variable}`, then catch-all); `cargo
    // lambda watch` has no `$default` route, so each spelling must match a path of the table.
    let mut checked = 0;
    for function in FUNCTIONS {
        for route in (function.routes)() {
            for path in spellings(route.path) {
                let table = watch.iter().map(|(p, b)| (p.as_str(), b.as_str()));
                let best = most_specific(table, &path);
                assert_eq!(
                    best,
                    Some(function.name),
                    "{} {} (as {path}) does not reach {} under cargo lambda watch",
                    route.method,
                    route.path,
                    function.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
    // And no path of the table leads to a function that serves nothing under it.
    for (path, binary) in &watch {
        let function = FUNCTIONS
            .iter()
            .find(|f| f.name == binary)
            .unwrap_or_else(|| panic!("watch router: {binary} is not a workspace function"));
        let served = (function.routes)().iter().any(|route| {
            spellings(route.path)
                .iter()
                .any(|p| specificity(path, p).is_some())
        });
        assert!(served, "watch router: {path} leads to no route of {binary}");
    }
}

#[test]
fn the_audit_recorders_trigger_is_the_one_the_code_expects() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let function = &template["Resources"]["AuditRecorderFunction"];
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("audit-recorder")
    );
    let stream = &function["Properties"]["Events"]["Changes"]["Properties"];
    let patterns: Vec<String> = stream["FilterCriteria"]["Filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f["Pattern"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        patterns,
        pulseboard_audit_recorder::filter_patterns(),
        "the stream filters in template.yaml and the recorder's filters differ"
    );
    assert_eq!(
        stream["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert!(stream["DestinationConfig"]["OnFailure"]["Destination"].is_mapping());
}
