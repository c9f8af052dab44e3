//! The **reports** function (API.md §6 reports): reports over a dashboard's Klips or a list
//! of Klips, with a file format, an optional window and schedule; `generate` queues a run
//! (the report worker generates it, reached through the table's stream), `runs` shows them
//! and `download` answers the file of a succeeded run.

mod reports;
mod runs;

use axum::Router;
use domain::reports::Report;
use platform::assets::resource;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;
use reports::ReportBody;

pub const FUNCTION: Function = Function {
    name: "reports",
    routes,
};

/// Every route of this function, each declared once. Viewers read and download what is
/// shared with them; generating needs `report.generate`.
pub fn routes() -> Vec<Route> {
    let edit = Access::needs("report.edit");
    vec![
        route(GET, "/reports", reports::list, Access::read()),
        route(
            POST,
            "/reports",
            reports::create,
            Access::needs("report.build").held(),
        ),
        route(
            GET,
            "/reports/{id}",
            resource::show::<Report>,
            Access::read(),
        ),
        route(
            PUT,
            "/reports/{id}",
            resource::update::<Report, ReportBody>,
            edit.held(),
        ),
        route(
            DELETE,
            "/reports/{id}",
            resource::delete::<Report, runs::RemoveRuns>,
            Access::needs("report.delete").held(),
        ),
        route(
            GET,
            "/reports/{id}/share-rights",
            resource::share_rights::<Report>,
            Access::read(),
        ),
        route(
            PUT,
            "/reports/{id}/share-rights",
            resource::put_share_rights::<Report>,
            edit.held(),
        ),
        route(
            POST,
            "/reports/{id}/generate",
            runs::generate,
            Access::needs("report.generate").held(),
        ),
        route(GET, "/reports/{id}/runs", runs::list, Access::read()),
        route(
            GET,
            "/reports/{id}/runs/{run_id}",
            runs::show,
            Access::read(),
        ),
        route(
            GET,
            "/reports/{id}/download",
            runs::download,
            Access::needs("report.download").reads(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
