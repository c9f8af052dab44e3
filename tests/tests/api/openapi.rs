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
