//! `docs/openapi.yaml` stays true to the code: every route every function declares is
//! documented with the permission its declaration names (or `security: []` when public), and
//! the spec documents nothing the code does not serve.

use pulseboard_cli::FUNCTIONS;
use serde_yaml::Value;
use std::collections::BTreeSet;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

#[test]
fn the_openapi_spec_documents_exactly_the_routes_the_code_serves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let spec: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let paths = spec["paths"].as_mapping().expect("paths");

    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().unwrap().to_owned();
        for method in METHODS {
            if item.get(*method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }

    let mut served = BTreeSet::new();
    for function in FUNCTIONS {
        for route in (function.routes)() {
            let name = function.name;
            let (method, path) = (route.method.as_str(), route.path);
            served.insert((method.to_owned(), path.to_owned()));
            let op = &spec["paths"][path][method.to_lowercase().as_str()];
            assert!(
                !op.is_null(),
                "{name}: {method} {path} is not in docs/openapi.yaml"
            );
            if route.access.is_public() {
                assert_eq!(
                    op["security"].as_sequence().map(Vec::len),
                    Some(0),
                    "{name}: {method} {path} must say security: []"
                );
                continue;
            }
            assert_eq!(
                op["x-permission"].as_str(),
                route.access.permission(),
                "{name}: x-permission of {method} {path}"
            );
            assert!(
                op["security"].as_sequence().is_none_or(|s| !s.is_empty()),
                "{name}: {method} {path} needs credentials"
            );
        }
    }
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

#[tokio::test]
async fn the_api_serves_its_openapi_document_without_credentials() {
    let app = pulseboard_tests::TestApp::spawn().await;
    for prefix in ["/api/v1", "/api/1.0"] {
        let r = app
            .http
            .get(format!(
                "{}{prefix}/openapi.json",
                app.url("").trim_end_matches("/api/v1")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("x-ratelimit-limit").is_none());
        let doc: serde_json::Value = r.json().await.unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
        let spec: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(doc, spec, "the served document is docs/openapi.yaml");
    }
}
