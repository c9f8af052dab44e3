//! The **klips** function (API.md §6): Klips (KPI widgets) over a data source, their schema,
//! share rights, annotations, and their computed values (stored when data or schema change,
//! so reading a dashboard does not recompute).

mod klips;

use axum::Router;
use domain::records::Klip;
use klips::KlipBody;
use platform::assets::resource;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "klips",
    routes,
};

/// Every route of this function, each declared once.
pub fn routes() -> Vec<Route> {
    let edit = Access::needs("klip.edit");
    vec![
        route(GET, "/klips", klips::list, Access::read()),
        route(
            POST,
            "/klips",
            klips::create,
            Access::needs("klip.build").held(),
        ),
        route(GET, "/klips/{id}", resource::show::<Klip>, Access::read()),
        route(
            PUT,
            "/klips/{id}",
            resource::update::<Klip, KlipBody>,
            edit.held(),
        ),
        route(
            DELETE,
            "/klips/{id}",
            resource::delete::<Klip, klips::OffDashboards>,
            Access::needs("klip.delete").held(),
        ),
        route(GET, "/klips/{id}/schema", klips::schema, Access::read()),
        route(PUT, "/klips/{id}/schema", klips::put_schema, edit.held()),
        route(
            GET,
            "/klips/{id}/share-rights",
            resource::share_rights::<Klip>,
            Access::read(),
        ),
        route(
            PUT,
            "/klips/{id}/share-rights",
            resource::put_share_rights::<Klip>,
            Access::needs("klip.share").held(),
        ),
        route(
            GET,
            "/klips/{id}/annotations",
            klips::annotations,
            Access::read(),
        ),
        route(
            POST,
            "/klips/{id}/annotations",
            klips::add_annotation,
            edit.held(),
        ),
        route(
            GET,
            "/klips/{id}/annotations/{annotation_id}",
            klips::annotation,
            Access::read(),
        ),
        route(
            PUT,
            "/klips/{id}/annotations/{annotation_id}",
            klips::update_annotation,
            edit.held(),
        ),
        route(
            DELETE,
            "/klips/{id}/annotations/{annotation_id}",
            klips::delete_annotation,
            edit.held(),
        ),
        // Recomputing a value anyone may see is not an edit.
        route(
            POST,
            "/klips/{id}/refresh",
            klips::refresh,
            Access::caller().held(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
