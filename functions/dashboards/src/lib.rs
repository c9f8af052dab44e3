//! The **dashboards** function (API.md §6): dashboards with their Klips' stored values,
//! layout, Klip instances, share rights, favourites, refresh, and published links that need
//! no credentials.

mod dashboards;
mod published;

use axum::routing::{delete, get, post, put};
use axum::Router;
use shared::assets::records::Dashboard;
use shared::assets::{put_share_rights_handler, share_rights_handler};
use shared::auth::{read, write, FunctionRoutes, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs.
pub const RULES: &[Rule] = &[
    read("/dashboards"),
    write("POST", "/dashboards", Some("dashboard.build")),
    read("/dashboards/{id}"),
    write("PUT", "/dashboards/{id}", Some("dashboard.edit")),
    write("DELETE", "/dashboards/{id}", Some("dashboard.delete")),
    read("/dashboards/{id}/layout"),
    write("PUT", "/dashboards/{id}/layout", Some("dashboard.edit")),
    read("/dashboards/{id}/klip-instances"),
    write(
        "PUT",
        "/dashboards/{id}/klip-instances",
        Some("dashboard.edit"),
    ),
    write(
        "DELETE",
        "/dashboards/{id}/klip-instances/{instance_id}",
        Some("dashboard.edit"),
    ),
    read("/dashboards/{id}/share-rights"),
    write(
        "PUT",
        "/dashboards/{id}/share-rights",
        Some("dashboard.share"),
    ),
    // A favourite is the caller's own mark on what they can see.
    write("PUT", "/dashboards/{id}/favorite", None),
    write("DELETE", "/dashboards/{id}/favorite", None),
    // Refreshing recomputes what the caller can already see.
    write("POST", "/dashboards/{id}/refresh", None),
    read("/dashboards/{id}/published-links"),
    write(
        "POST",
        "/dashboards/{id}/published-links",
        Some("dashboard.publish"),
    ),
    read("/dashboards/{id}/published-links/{link_id}"),
    write(
        "DELETE",
        "/dashboards/{id}/published-links/{link_id}",
        Some("dashboard.publish"),
    ),
];

/// Routes that need no credentials.
pub const PUBLIC: &[(&str, &str)] = &[("GET", "/public/dashboards/{token}")];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .with_public(PUBLIC)
        .public("/public/dashboards/{token}", get(published::show_public))
        .protected(
            "/dashboards",
            get(dashboards::list).post(dashboards::create),
        )
        .protected(
            "/dashboards/{id}",
            get(dashboards::show)
                .put(dashboards::update)
                .delete(dashboards::delete),
        )
        .protected(
            "/dashboards/{id}/layout",
            get(dashboards::layout).put(dashboards::put_layout),
        )
        .protected(
            "/dashboards/{id}/klip-instances",
            get(dashboards::instances).put(dashboards::add_instances),
        )
        .protected(
            "/dashboards/{id}/klip-instances/{instance_id}",
            delete(dashboards::remove_instance),
        )
        .protected(
            "/dashboards/{id}/share-rights",
            get(share_rights_handler::<Dashboard>).put(put_share_rights_handler::<Dashboard>),
        )
        .protected(
            "/dashboards/{id}/favorite",
            put(dashboards::favorite).delete(dashboards::unfavorite),
        )
        .protected("/dashboards/{id}/refresh", post(dashboards::refresh))
        .protected(
            "/dashboards/{id}/published-links",
            get(published::list).post(published::create),
        )
        .protected(
            "/dashboards/{id}/published-links/{link_id}",
            get(published::show).delete(published::revoke),
        )
        .build()
}
