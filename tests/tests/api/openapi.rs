//! `docs/openapi.yaml` stays true to the code: every route of every function's permission
//! table and public list is documented with the permission the table names, and the spec
//! documents nothing the code does not serve.

use serde_yaml::Value;
use shared::auth::Rule;
use std::collections::BTreeSet;

/// A function's name, permission table and public routes.
type Function = (
    &'static str,
    &'static [Rule],
    &'static [(&'static str, &'static str)],
);

const FUNCTIONS: &[Function] = &[
    ("auth", pulseboard_auth::RULES, pulseboard_auth::PUBLIC),
    ("users", pulseboard_users::RULES, &[]),
    ("clients", pulseboard_clients::RULES, &[]),
    ("datasources", pulseboard_datasources::RULES, &[]),
    ("klips", pulseboard_klips::RULES, &[]),
    (
        "dashboards",
        pulseboard_dashboards::RULES,
        pulseboard_dashboards::PUBLIC,
    ),
];

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
    for (function, rules, public) in FUNCTIONS {
        for rule in rules.iter() {
            served.insert((rule.method.to_owned(), rule.path.to_owned()));
            let op = &spec["paths"][rule.path][rule.method.to_lowercase().as_str()];
            assert!(
                !op.is_null(),
                "{function}: {} {} is not in docs/openapi.yaml",
                rule.method,
                rule.path
            );
            let permission = op["x-permission"].as_str();
            assert_eq!(
                permission, rule.permission,
                "{function}: x-permission of {} {}",
                rule.method, rule.path
            );
            assert!(
                op["security"].as_sequence().is_none_or(|s| !s.is_empty()),
                "{function}: {} {} needs credentials",
                rule.method,
                rule.path
            );
        }
        for (method, path) in public.iter() {
            served.insert((method.to_string(), path.to_string()));
            let op = &spec["paths"][*path][method.to_lowercase().as_str()];
            assert!(
                !op.is_null(),
                "{function}: public {method} {path} is not in docs/openapi.yaml"
            );
            assert_eq!(
                op["security"].as_sequence().map(Vec::len),
                Some(0),
                "{function}: {method} {path} must say security: []"
            );
        }
    }
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}
