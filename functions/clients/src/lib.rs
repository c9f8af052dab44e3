//! The **clients** function (API.md §6): the client accounts a partner company manages.
//! A client is a company of its own (own users, assets and rate-limit counters) whose
//! `parent_id` is the partner; `client_id=<id>` on any request acts inside it.

mod clients;

use axum::Router;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "clients",
    routes,
};

/// Every route of this function, each declared once. Reading client accounts is partner
/// business, so reads need `client.access` too.
pub fn routes() -> Vec<Route> {
    let access = Access::needs("client.access").reads();
    let edit = Access::needs("client.edit");
    vec![
        route(GET, "/clients", clients::list, access),
        route(
            POST,
            "/clients",
            clients::create,
            Access::needs("client.build"),
        ),
        route(GET, "/clients/{id}", clients::show, access),
        route(PUT, "/clients/{id}", clients::update, edit),
        route(
            DELETE,
            "/clients/{id}",
            clients::delete,
            Access::needs("client.delete"),
        ),
        route(GET, "/clients/{id}/properties", clients::properties, access),
        route(
            PUT,
            "/clients/{id}/properties",
            clients::put_properties,
            edit,
        ),
        route(
            DELETE,
            "/clients/{id}/properties",
            clients::delete_property,
            edit,
        ),
        route(GET, "/clients/{id}/resources", clients::resources, access),
        route(PUT, "/clients/{id}/resources", clients::put_resources, edit),
        route(GET, "/clients/{id}/features", clients::features, access),
        route(PUT, "/clients/{id}/features", clients::put_features, edit),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
