//! The **datasources** function (API.md §6): data sources, their data (pushed CSV or JSON,
//! kept in S3) and URL connectors that fetch it.
//!
//! `datasources` is the resource itself, `content` its data, `refresh` the single and bulk
//! refreshes, `connector` the URL fetch and `egress` the check of which addresses a fetch may
//! reach.

mod content;
mod datasources;
mod refresh;

use axum::routing::{get, post};
use axum::Router;
use shared::assets::records::Datasource;
use shared::assets::{put_share_rights_handler, share_rights_handler};
use shared::auth::{read, write, FunctionRoutes, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs. Reads need none:
/// visibility limits what viewers see. Downloading the data needs `datasource.download`.
pub const RULES: &[Rule] = &[
    read("/datasources"),
    write("POST", "/datasources", Some("datasource.create")),
    write("POST", "/datasources/@/refresh", Some("datasource.refresh")),
    read("/datasources/{id}"),
    write("PUT", "/datasources/{id}", Some("datasource.edit")),
    write("DELETE", "/datasources/{id}", Some("datasource.delete")),
    read("/datasources/{id}/properties"),
    write(
        "PUT",
        "/datasources/{id}/properties",
        Some("datasource.edit"),
    ),
    write("POST", "/datasources/{id}/enable", Some("datasource.edit")),
    write("POST", "/datasources/{id}/disable", Some("datasource.edit")),
    write("GET", "/datasources/{id}/data", Some("datasource.download")),
    write("PUT", "/datasources/{id}/data", Some("datasource.edit")),
    write("POST", "/datasources/{id}/data", Some("datasource.edit")),
    write(
        "POST",
        "/datasources/{id}/refresh",
        Some("datasource.refresh"),
    ),
    read("/datasources/{id}/share-rights"),
    write(
        "PUT",
        "/datasources/{id}/share-rights",
        Some("datasource.share"),
    ),
];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .protected(
            "/datasources",
            get(datasources::list).post(datasources::create),
        )
        .protected("/datasources/@/refresh", post(refresh::bulk_refresh))
        .protected(
            "/datasources/{id}",
            get(datasources::show)
                .put(datasources::update)
                .delete(datasources::delete),
        )
        .protected(
            "/datasources/{id}/properties",
            get(datasources::properties).put(datasources::put_properties),
        )
        .protected("/datasources/{id}/enable", post(datasources::enable))
        .protected("/datasources/{id}/disable", post(datasources::disable))
        .protected(
            "/datasources/{id}/data",
            get(content::show)
                .put(content::replace)
                .post(content::append),
        )
        .protected("/datasources/{id}/refresh", post(refresh::refresh))
        .protected(
            "/datasources/{id}/share-rights",
            get(share_rights_handler::<Datasource>).put(put_share_rights_handler::<Datasource>),
        )
        .build()
}
