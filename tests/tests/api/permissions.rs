//! The permission matrix: every protected route of every function, walked with a viewer, an
//! editor, an admin and a scoped API key, answers 403 naming the permission exactly where its
//! function's table says so.

use pulseboard_tests::{json, TestApp};
use serde_json::json;
use shared::auth::permissions::builtin_role;
use shared::auth::Rule;
use std::collections::BTreeSet;

const FUNCTIONS: &[(&str, &[Rule])] = &[
    ("auth", pulseboard_auth::RULES),
    ("users", pulseboard_users::RULES),
    ("clients", pulseboard_clients::RULES),
    ("datasources", pulseboard_datasources::RULES),
    ("klips", pulseboard_klips::RULES),
    ("dashboards", pulseboard_dashboards::RULES),
];

#[tokio::test]
async fn every_route_of_every_function_enforces_its_table() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app.user_with_key(&["viewer"], None).await;
    let (_, editor) = app.user_with_key(&["editor"], None).await;
    let scopes = ["report.download", "dashboard.build"];
    let scoped = app
        .create_key(json!({"name": "scoped", "scopes": scopes}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let principals: Vec<(&str, String, BTreeSet<String>)> = vec![
        ("viewer", viewer, builtin_role("viewer").unwrap()),
        ("editor", editor, builtin_role("editor").unwrap()),
        (
            "scoped key",
            scoped,
            scopes.iter().map(|s| s.to_string()).collect(),
        ),
        (
            "admin",
            app.key().to_owned(),
            builtin_role("admin").unwrap(),
        ),
    ];
    let dummy = "0123456789abcdef0123456789abcdef";
    let mut checked = 0;
    for (function, rules) in FUNCTIONS {
        for rule in rules.iter() {
            // `users/{id}/api-key` for oneself, everything else with an id that does not exist.
            let path = if rule.path == "/users/{id}/api-key" {
                "/users/self/api-key".to_owned()
            } else {
                rule.path.replace("{id}", dummy).replace("{user_id}", dummy)
            };
            for (who, key, held) in &principals {
                let body = (rule.method != "GET" && rule.method != "DELETE").then(|| json!({}));
                let response = app.call(rule.method, &path, key, body).await;
                let (status, body) = json(response).await;
                match rule.permission {
                    Some(p) if !held.contains(p) => {
                        assert_eq!(
                            status, 403,
                            "{function}: {who} {} {path}: {body}",
                            rule.method
                        );
                        assert_eq!(
                            body["message"],
                            format!("missing permission {p}"),
                            "{function}: {who} {} {path}",
                            rule.method
                        );
                    }
                    _ => assert_ne!(
                        status, 403,
                        "{function}: {who} {} {path}: {body}",
                        rule.method
                    ),
                }
                assert_ne!(
                    status, 500,
                    "{function}: {who} {} {path}: {body}",
                    rule.method
                );
                assert_ne!(
                    status, 405,
                    "{function}: {} {path} is in the table but not routed",
                    rule.method
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
}
