//! The **clients** function (API.md §6): the client accounts a partner company manages.
//! A client is a company of its own (own users, assets and rate-limit counters) whose
//! `parent_id` is the partner; `client_id=<id>` on any request acts inside it.

mod clients;

use axum::routing::get;
use axum::Router;
use shared::auth::{write, FunctionRoutes, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs. Reading client
/// accounts is partner business, so reads need `client.access` too.
pub const RULES: &[Rule] = &[
    write("GET", "/clients", Some("client.access")),
    write("POST", "/clients", Some("client.build")),
    write("GET", "/clients/{id}", Some("client.access")),
    write("PUT", "/clients/{id}", Some("client.edit")),
    write("DELETE", "/clients/{id}", Some("client.delete")),
    write("GET", "/clients/{id}/properties", Some("client.access")),
    write("PUT", "/clients/{id}/properties", Some("client.edit")),
    write("DELETE", "/clients/{id}/properties", Some("client.edit")),
    write("GET", "/clients/{id}/resources", Some("client.access")),
    write("PUT", "/clients/{id}/resources", Some("client.edit")),
    write("GET", "/clients/{id}/features", Some("client.access")),
    write("PUT", "/clients/{id}/features", Some("client.edit")),
];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .protected("/clients", get(clients::list).post(clients::create))
        .protected(
            "/clients/{id}",
            get(clients::show)
                .put(clients::update)
                .delete(clients::delete),
        )
        .protected(
            "/clients/{id}/properties",
            get(clients::properties)
                .put(clients::put_properties)
                .delete(clients::delete_property),
        )
        .protected(
            "/clients/{id}/resources",
            get(clients::resources).put(clients::put_resources),
        )
        .protected(
            "/clients/{id}/features",
            get(clients::features).put(clients::put_features),
        )
        .build()
}
