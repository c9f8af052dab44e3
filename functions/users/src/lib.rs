//! The **users** function (API.md §2, §6): a company's users, groups and roles, and its
//! audit log (`GET /audit-events`).

mod audit;
mod grants;
mod groups;
mod roles;
mod users;

use axum::Router;
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "users",
    routes,
};

/// Every route of this function, each declared once.
pub fn routes() -> Vec<Route> {
    let manage = Access::needs("user.manage");
    vec![
        route(GET, "/users", users::list, Access::read()),
        route(POST, "/users", users::create, manage),
        route(GET, "/users/{id}", users::show, Access::read()),
        route(PUT, "/users/{id}", users::update, manage),
        route(DELETE, "/users/{id}", users::delete, manage),
        route(
            POST,
            "/users/{id}/reset-password",
            users::reset_password,
            manage,
        ),
        route(POST, "/users/{id}/unlock", users::unlock, manage),
        route(GET, "/groups", groups::list, Access::read()),
        route(POST, "/groups", groups::create, manage),
        route(GET, "/groups/{id}", groups::show, Access::read()),
        route(PUT, "/groups/{id}", groups::update, manage),
        route(DELETE, "/groups/{id}", groups::delete, manage),
        route(GET, "/groups/{id}/members", groups::members, Access::read()),
        route(POST, "/groups/{id}/members", groups::add_members, manage),
        route(
            PUT,
            "/groups/{id}/members/{user_id}",
            groups::add_member,
            manage,
        ),
        route(
            DELETE,
            "/groups/{id}/members/{user_id}",
            groups::remove_member,
            manage,
        ),
        route(GET, "/roles", roles::list, Access::read()),
        route(POST, "/roles", roles::create, manage),
        route(GET, "/roles/{id}", roles::show, Access::read()),
        route(PUT, "/roles/{id}", roles::update, manage),
        route(DELETE, "/roles/{id}", roles::delete, manage),
        route(
            GET,
            "/audit-events",
            audit::list,
            Access::needs("audit.read").reads(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
