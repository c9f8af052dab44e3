//! The **datasources** function (API.md §6): data sources, their data (pushed CSV or JSON,
//! kept in S3) and URL connectors that fetch it.
//!
//! `datasources` is the resource itself, `content` its data, `refresh` the single and bulk
//! refreshes.

mod content;
mod datasources;
mod refresh;

use axum::Router;
use domain::records::Datasource;
use platform::assets::resource;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "datasources",
    routes,
};

/// Every route of this function, each declared once. Reads need no permission: visibility
/// limits what viewers see. Downloading the data needs `datasource.download`.
pub fn routes() -> Vec<Route> {
    let edit = Access::needs("datasource.edit");
    let refresh = Access::needs("datasource.refresh");
    vec![
        route(GET, "/datasources", datasources::list, Access::read()),
        route(
            POST,
            "/datasources",
            datasources::create,
            Access::needs("datasource.create").held(),
        ),
        route(
            POST,
            "/datasources/@/refresh",
            refresh::bulk_refresh,
            refresh,
        ),
        route(
            GET,
            "/datasources/{id}",
            resource::show::<Datasource>,
            Access::read(),
        ),
        route(PUT, "/datasources/{id}", datasources::update, edit.held()),
        route(
            DELETE,
            "/datasources/{id}",
            datasources::delete,
            Access::needs("datasource.delete").held(),
        ),
        route(
            GET,
            "/datasources/{id}/properties",
            datasources::properties,
            Access::read(),
        ),
        route(
            PUT,
            "/datasources/{id}/properties",
            datasources::put_properties,
            edit.held(),
        ),
        route(
            POST,
            "/datasources/{id}/enable",
            datasources::enable,
            edit.held(),
        ),
        route(
            POST,
            "/datasources/{id}/disable",
            datasources::disable,
            edit.held(),
        ),
        route(
            GET,
            "/datasources/{id}/data",
            content::show,
            Access::needs("datasource.download").reads(),
        ),
        route(PUT, "/datasources/{id}/data", content::replace, edit.held()),
        route(POST, "/datasources/{id}/data", content::append, edit.held()),
        route(POST, "/datasources/{id}/refresh", refresh::refresh, refresh),
        route(
            GET,
            "/datasources/{id}/share-rights",
            resource::share_rights::<Datasource>,
            Access::read(),
        ),
        route(
            PUT,
            "/datasources/{id}/share-rights",
            resource::put_share_rights::<Datasource>,
            Access::needs("datasource.share").held(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
