//! The saved API Gateway events under `tests/events/` (which function each goes to and what
//! it must answer) and fresh values for their placeholders. Two tests use them: the router
//! test (`tests/api/events.rs`, through `lambda_http`'s parser) and the Lambda harness
//! (`tests/lambda.rs`, through each packaged `bootstrap` and the Runtime API).

use crate::{TestApp, PASSWORD};
use serde_json::{json, Value};

/// The directory of the saved events.
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The value of a data source header the saved events set (a credential: no log may show it).
pub const DS_SECRET: &str = "ds-header-secret-5f1c9a";

/// How many saved API Gateway events there are (every one must be in [`EVENTS`]).
pub fn saved() -> usize {
    std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

/// The event `name` with its placeholders filled in for `app`'s company.
pub async fn filled(app: &TestApp, name: &str) -> String {
    filled_with_secrets(app, name).await.0
}

/// [`filled`], and the secrets it holds (key, password, tokens, header value), which no log
/// line may show.
pub async fn filled_with_secrets(app: &TestApp, name: &str) -> (String, Vec<String>) {
    let mut text = std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap();
    let mut secrets = Vec::new();
    for (placeholder, value) in placeholders(app, name).await {
        if text.contains(placeholder)
            && matches!(
                placeholder,
                "{{API_KEY}}"
                    | "{{PASSWORD}}"
                    | "{{REFRESH}}"
                    | "{{RESET_TOKEN}}"
                    | "{{TOKEN}}"
                    | "{{DS_SECRET}}"
            )
        {
            secrets.push(value.clone());
        }
        text = text.replace(placeholder, &value);
    }
    assert!(!text.contains("{{"), "{name}: a placeholder has no value");
    (text, secrets)
}

/// Each event, the function API Gateway sends it to, and the status it must answer.
pub const EVENTS: &[(&str, &str, u16)] = &[
    ("auth", "auth-login", 200),
    ("auth", "auth-login-claribi", 200),
    ("auth", "auth-refresh", 200),
    ("auth", "auth-refresh-claribi", 200),
    ("auth", "auth-logout", 200),
    ("auth", "auth-verify", 200),
    ("auth", "profile", 200),
    ("auth", "usage", 200),
    ("auth", "api-keys-list", 200),
    ("auth", "api-keys-create", 201),
    ("auth", "api-keys-get", 200),
    ("auth", "api-keys-revoke", 200),
    ("auth", "api-keys-rotate", 201),
    ("auth", "users-api-key", 201),
    ("auth", "auth-reset-password", 200),
    ("auth", "unknown-route", 404),
    ("klips", "klips-list", 200),
    ("klips", "klips-create", 201),
    ("klips", "klips-get", 200),
    ("klips", "klips-update", 200),
    ("klips", "klips-delete", 200),
    ("klips", "klips-schema-get", 200),
    ("klips", "klips-schema-put", 200),
    ("klips", "klips-share-rights-get", 200),
    ("klips", "klips-share-rights-put", 200),
    ("klips", "klips-annotations-list", 200),
    ("klips", "klips-annotations-create", 201),
    ("klips", "klips-annotation-get", 200),
    ("klips", "klips-annotation-update", 200),
    ("klips", "klips-annotation-delete", 200),
    ("klips", "klips-refresh", 200),
    ("dashboards", "dashboards-list", 200),
    ("dashboards", "dashboards-create", 201),
    ("dashboards", "dashboards-get", 200),
    ("dashboards", "dashboards-update", 200),
    ("dashboards", "dashboards-delete", 200),
    ("dashboards", "dashboards-layout-get", 200),
    ("dashboards", "dashboards-layout-put", 200),
    ("dashboards", "dashboards-klip-instances-list", 200),
    ("dashboards", "dashboards-klip-instances-add", 200),
    ("dashboards", "dashboards-klip-instance-remove", 200),
    ("dashboards", "dashboards-share-rights-get", 200),
    ("dashboards", "dashboards-share-rights-put", 200),
    ("dashboards", "dashboards-favorite-put", 200),
    ("dashboards", "dashboards-favorite-delete", 200),
    ("dashboards", "dashboards-refresh", 200),
    ("dashboards", "dashboards-published-links-list", 200),
    ("dashboards", "dashboards-published-links-create", 201),
    ("dashboards", "dashboards-published-link-revoke", 200),
    ("dashboards", "public-dashboard", 200),
    ("datasources", "datasources-list", 200),
    ("datasources", "datasources-create", 201),
    ("datasources", "datasources-get", 200),
    ("datasources", "datasources-update", 200),
    ("datasources", "datasources-delete", 200),
    ("datasources", "datasources-properties-get", 200),
    ("datasources", "datasources-properties-put", 200),
    ("datasources", "datasources-disable", 200),
    ("datasources", "datasources-enable", 200),
    ("datasources", "datasources-data-put", 200),
    ("datasources", "datasources-data-append", 200),
    ("datasources", "datasources-data-get", 200),
    ("datasources", "datasources-refresh", 200),
    ("datasources", "datasources-bulk-refresh", 202),
    ("datasources", "datasources-share-rights-get", 200),
    ("datasources", "datasources-share-rights-put", 200),
    ("users", "users-list", 200),
    ("users", "users-get", 200),
    ("clients", "clients-list", 200),
    ("clients", "clients-create", 201),
    ("reports", "reports-list", 200),
    ("reports", "reports-create", 201),
    ("reports", "reports-get", 200),
    ("reports", "reports-generate", 202),
    ("notifications", "channels-list", 200),
    ("notifications", "channels-create", 201),
    ("notifications", "deliveries-list", 200),
];

/// Fresh values for every placeholder the saved events use: a key, a refresh token, a Klip
/// with an annotation, a dashboard holding it, and a published link.
pub async fn placeholders(app: &TestApp, name: &str) -> Vec<(&'static str, String)> {
    let created = Created::new(app, name).await;
    created.placeholders(app)
}

/// What the placeholders name, as the API answered its creation.
struct Created {
    key: Value,
    reset: Value,
    refresh: String,
    ds_id: String,
    klip_id: String,
    note: Value,
    dash_id: String,
    added: Value,
    report: Value,
    link: Value,
}

impl Created {
    /// Creates, in this order: a key, a password reset, a login's refresh token, a data
    /// source, a Klip with an annotation, a dashboard holding it, a report and a published
    /// link.
    async fn new(app: &TestApp, name: &str) -> Self {
        let key = app
            .create_key(json!({"name": format!("event {name}")}))
            .await;
        let reset_path = format!("/users/{}/reset-password", app.company.user_id);
        let reset = post_json(app, &reset_path, json!({})).await;
        let refresh = app.login().await["refresh"].as_str().unwrap().to_owned();
        let ds = post_json(app, "/datasources", json!({"name": "Event source"})).await;
        let ds_id = data_str(&ds, "id");
        let klip = post_json(
            app,
            "/klips",
            json!({"name": "Event Klip", "type": "number", "query": {"aggregate": "count"}}),
        )
        .await;
        let klip_id = data_str(&klip, "id");
        let note_path = format!("/klips/{klip_id}/annotations");
        let note = post_json(
            app,
            &note_path,
            json!({"date": "2026-11-01", "text": "note"}),
        )
        .await;
        let dash = post_json(app, "/dashboards", json!({"name": "Event dashboard"})).await;
        let dash_id = data_str(&dash, "id");
        let added = add_klip(app, &dash_id, &klip_id).await;
        let report = post_json(
            app,
            "/reports",
            json!({"name": "Event report", "klip_ids": [klip_id], "format": "json"}),
        )
        .await;
        let link_path = format!("/dashboards/{dash_id}/published-links");
        let link = post_json(app, &link_path, json!({})).await;
        Created {
            key,
            reset,
            refresh,
            ds_id,
            klip_id,
            note,
            dash_id,
            added,
            report,
            link,
        }
    }

    /// Each placeholder with its value.
    fn placeholders(self, app: &TestApp) -> Vec<(&'static str, String)> {
        vec![
            ("{{API_KEY}}", app.key().to_owned()),
            ("{{EMAIL}}", app.company.email.clone()),
            ("{{PASSWORD}}", PASSWORD.to_owned()),
            ("{{REFRESH}}", self.refresh),
            ("{{KEY_ID}}", self.key["id"].as_str().unwrap().to_owned()),
            ("{{USER_ID}}", app.company.user_id.clone()),
            ("{{RESET_TOKEN}}", data_str(&self.reset, "token")),
            ("{{KLIP_ID}}", self.klip_id),
            ("{{ANNOTATION_ID}}", data_str(&self.note, "id")),
            ("{{DASHBOARD_ID}}", self.dash_id),
            (
                "{{INSTANCE_ID}}",
                self.added["data"]["klip_instances"][0]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            ("{{LINK_ID}}", data_str(&self.link, "id")),
            ("{{TOKEN}}", data_str(&self.link, "token")),
            ("{{DATASOURCE_ID}}", self.ds_id),
            ("{{DS_SECRET}}", DS_SECRET.to_owned()),
            ("{{REPORT_ID}}", data_str(&self.report, "id")),
        ]
    }
}

/// POSTs `body` to `path` with the company's key; answers the response's JSON.
async fn post_json(app: &TestApp, path: &str, body: Value) -> Value {
    app.post(path, body).await.json().await.unwrap()
}

/// Adds the Klip to the dashboard; answers the response's JSON.
async fn add_klip(app: &TestApp, dash_id: &str, klip_id: &str) -> Value {
    app.call(
        "PUT",
        &format!("/dashboards/{dash_id}/klip-instances"),
        app.key(),
        Some(json!({"klips": [{"klip_id": klip_id}]})),
    )
    .await
    .json()
    .await
    .unwrap()
}

/// The string `data.{field}` of an answer.
fn data_str(answer: &Value, field: &str) -> String {
    answer["data"][field].as_str().unwrap().to_owned()
}
