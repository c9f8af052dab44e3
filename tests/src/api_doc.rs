//! The routes section of `docs/API.md`, generated from the route declarations and the
//! OpenAPI summaries, so the reference cannot drift from the code. The test
//! `api::api_doc` compares it with the file; `UPDATE_DOCS=1 make test` rewrites the section.

use platform::routes::Access;
use pulseboard_cli::FUNCTIONS;

pub const BEGIN: &str = "<!-- routes:begin (generated from the route declarations; UPDATE_DOCS=1 make test rewrites it) -->";
pub const END: &str = "<!-- routes:end -->";

fn access(access: &Access) -> String {
    match access {
        Access::Public => "none".into(),
        Access::PublishedLink(_) => "none (the link's token)".into(),
        Access::Caller {
            permission: Some(p),
            ..
        } => p
            .split('|')
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" or "),
        Access::Caller {
            permission: None, ..
        } => "any caller".into(),
    }
}

/// The generated section, markers included.
pub fn routes_section(spec: &serde_yaml::Value) -> String {
    let mut out = format!("{BEGIN}\n");
    for function in FUNCTIONS {
        out.push_str(&format!(
            "\n### `{}` function\n\n| method | path | needs | what it does |\n|---|---|---|---|\n",
            function.name
        ));
        for route in (function.routes)() {
            let method = route.method.as_str();
            let summary = spec["paths"][route.path][method.to_lowercase().as_str()]["summary"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            out.push_str(&format!(
                "| {method} | `{}` | {} | {summary} |\n",
                route.path,
                access(&route.access)
            ));
        }
    }
    out.push_str(&format!("\n{END}"));
    out
}
