//! The permission matrix: every protected route of every function, walked with a viewer, an
//! editor, an admin and a scoped API key, answers 403 naming the permission exactly where its
//! declaration says so.

use platform::auth::permissions::builtin_role;
use pulseboard_tests::{json, TestApp};
use serde_json::json;
use std::collections::BTreeSet;

/// A built-in role's permissions by name.
fn names(set: Option<BTreeSet<platform::auth::permissions::Permission>>) -> BTreeSet<String> {
    set.unwrap().iter().map(|p| p.as_str().to_owned()).collect()
}

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
        ("viewer", viewer, names(builtin_role("viewer"))),
        ("editor", editor, names(builtin_role("editor"))),
        (
            "scoped key",
            scoped,
            scopes.iter().map(|s| s.to_string()).collect(),
        ),
        ("admin", app.key().to_owned(), names(builtin_role("admin"))),
    ];
    let dummy = "0123456789abcdef0123456789abcdef";
    let mut checked = 0;
    for function in pulseboard_cli::FUNCTIONS {
        let name = function.name;
        for route in (function.routes)()
            .into_iter()
            .filter(|r| !r.access.is_public())
        {
            let (method, permission) = (route.method.as_str(), route.access.permission());
            // A name that is no permission would be held by nobody: the route could never run.
            for name in permission.into_iter().flat_map(|p| p.split('|')) {
                assert!(
                    platform::auth::permissions::Permission::parse(name).is_some(),
                    "{}: '{name}' is not a permission",
                    route.path
                );
            }
            // `users/{id}/api-key` for oneself, everything else with an id that does not exist.
            let path = if route.path == "/users/{id}/api-key" {
                "/users/self/api-key".to_owned()
            } else {
                route
                    .path
                    .replace("{id}", dummy)
                    .replace("{user_id}", dummy)
            };
            for (who, key, held) in &principals {
                let body = (method != "GET" && method != "DELETE").then(|| json!({}));
                let response = app.call(method, &path, key, body).await;
                let (status, body) = json(response).await;
                // `a|b`: any one of them will do.
                match permission {
                    Some(p) if !p.split('|').any(|p| held.contains(p)) => {
                        assert_eq!(status, 403, "{name}: {who} {} {path}: {body}", method);
                        assert_eq!(
                            body["message"],
                            format!("missing permission {}", p.replace('|', " or ")),
                            "{name}: {who} {} {path}",
                            method
                        );
                    }
                    _ => assert_ne!(status, 403, "{name}: {who} {} {path}: {body}", method),
                }
                assert_ne!(status, 500, "{name}: {who} {} {path}: {body}", method);
                assert_ne!(
                    status, 405,
                    "{name}: {} {path} is in the table but not routed",
                    method
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
}
