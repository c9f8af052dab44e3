//! The **dashboards** function (API.md §6): dashboards with their Klips' stored values,
//! layout, Klip instances, share rights, favourites, refresh, and published links that need
//! no credentials.

mod dashboards;
mod published;

use axum::Router;
use dashboards::DashboardBody;
use domain::records::Dashboard;
use platform::assets::resource;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "dashboards",
    routes,
};

/// Editing a dashboard: its fields, layout and Klips.
const EDIT: Access = Access::needs("dashboard.edit");

/// Every route of this function, each declared once: the public view of a published link,
/// then the dashboards, their Klips, share rights, the caller's own marks and published links.
pub fn routes() -> Vec<Route> {
    [
        public_routes(),
        dashboard_routes(),
        klip_instance_routes(),
        share_rights_routes(),
        caller_routes(),
        published_link_routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A published link's dashboard, shown without credentials.
fn public_routes() -> Vec<Route> {
    vec![route(
        GET,
        "/public/dashboards/{token}",
        published::show_public,
        Access::published_link(published::resolve),
    )]
}

/// The dashboards themselves and their layout.
fn dashboard_routes() -> Vec<Route> {
    vec![
        route(GET, "/dashboards", dashboards::list, Access::read()),
        route(
            POST,
            "/dashboards",
            dashboards::create,
            Access::needs("dashboard.build").held(),
        ),
        route(GET, "/dashboards/{id}", dashboards::show, Access::read()),
        route(
            PUT,
            "/dashboards/{id}",
            resource::update::<Dashboard, DashboardBody>,
            EDIT.held(),
        ),
        route(
            DELETE,
            "/dashboards/{id}",
            resource::delete::<Dashboard, published::Unpublish>,
            Access::needs("dashboard.delete").held(),
        ),
        route(
            GET,
            "/dashboards/{id}/layout",
            dashboards::layout,
            Access::read(),
        ),
        route(
            PUT,
            "/dashboards/{id}/layout",
            dashboards::put_layout,
            EDIT.held(),
        ),
    ]
}

/// A dashboard's Klips (its Klip instances).
fn klip_instance_routes() -> Vec<Route> {
    vec![
        route(
            GET,
            "/dashboards/{id}/klip-instances",
            dashboards::instances,
            Access::read(),
        ),
        route(
            PUT,
            "/dashboards/{id}/klip-instances",
            dashboards::add_instances,
            EDIT.held(),
        ),
        route(
            DELETE,
            "/dashboards/{id}/klip-instances/{instance_id}",
            dashboards::remove_instance,
            EDIT.held(),
        ),
    ]
}

/// Who a dashboard is shared with.
fn share_rights_routes() -> Vec<Route> {
    vec![
        route(
            GET,
            "/dashboards/{id}/share-rights",
            resource::share_rights::<Dashboard>,
            Access::read(),
        ),
        route(
            PUT,
            "/dashboards/{id}/share-rights",
            resource::put_share_rights::<Dashboard>,
            Access::needs("dashboard.share").held(),
        ),
    ]
}

/// What the caller does to a dashboard they can see: favourites and refresh.
fn caller_routes() -> Vec<Route> {
    vec![
        // A favourite is the caller's own mark on what they can see.
        route(
            PUT,
            "/dashboards/{id}/favorite",
            dashboards::favorite,
            Access::caller().held(),
        ),
        route(
            DELETE,
            "/dashboards/{id}/favorite",
            dashboards::unfavorite,
            Access::caller().held(),
        ),
        // Refreshing recomputes what the caller can already see.
        route(
            POST,
            "/dashboards/{id}/refresh",
            dashboards::refresh,
            Access::caller().held(),
        ),
    ]
}

/// A dashboard's published links.
fn published_link_routes() -> Vec<Route> {
    let publish = Access::needs("dashboard.publish");
    vec![
        route(
            GET,
            "/dashboards/{id}/published-links",
            published::list,
            Access::read(),
        ),
        route(
            POST,
            "/dashboards/{id}/published-links",
            published::create,
            publish.held(),
        ),
        route(
            GET,
            "/dashboards/{id}/published-links/{link_id}",
            published::show,
            Access::read(),
        ),
        route(
            DELETE,
            "/dashboards/{id}/published-links/{link_id}",
            published::revoke,
            publish.held(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
