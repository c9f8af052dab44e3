//! The **users** function (API.md §2, §6): a company's users, groups and roles.

mod groups;
mod roles;
mod users;

use axum::routing::{get, post, put};
use axum::Router;
use shared::auth::{read, write, FunctionRoutes, Rule};
use shared::AppState;

/// Every protected route of this function and the permission it needs.
pub const RULES: &[Rule] = &[
    read("/users"),
    write("POST", "/users", Some("user.manage")),
    read("/users/{id}"),
    write("PUT", "/users/{id}", Some("user.manage")),
    write("DELETE", "/users/{id}", Some("user.manage")),
    write("POST", "/users/{id}/reset-password", Some("user.manage")),
    write("POST", "/users/{id}/unlock", Some("user.manage")),
    read("/groups"),
    write("POST", "/groups", Some("user.manage")),
    read("/groups/{id}"),
    write("PUT", "/groups/{id}", Some("user.manage")),
    write("DELETE", "/groups/{id}", Some("user.manage")),
    read("/groups/{id}/members"),
    write("POST", "/groups/{id}/members", Some("user.manage")),
    write("PUT", "/groups/{id}/members/{user_id}", Some("user.manage")),
    write(
        "DELETE",
        "/groups/{id}/members/{user_id}",
        Some("user.manage"),
    ),
    read("/roles"),
    write("POST", "/roles", Some("user.manage")),
    read("/roles/{id}"),
    write("PUT", "/roles/{id}", Some("user.manage")),
    write("DELETE", "/roles/{id}", Some("user.manage")),
];

pub fn router(state: AppState) -> Router {
    FunctionRoutes::new(state, RULES)
        .protected("/users", get(users::list).post(users::create))
        .protected(
            "/users/{id}",
            get(users::show).put(users::update).delete(users::delete),
        )
        .protected("/users/{id}/reset-password", post(users::reset_password))
        .protected("/users/{id}/unlock", post(users::unlock))
        .protected("/groups", get(groups::list).post(groups::create))
        .protected(
            "/groups/{id}",
            get(groups::show).put(groups::update).delete(groups::delete),
        )
        .protected(
            "/groups/{id}/members",
            get(groups::members).post(groups::add_members),
        )
        .protected(
            "/groups/{id}/members/{user_id}",
            put(groups::add_member).delete(groups::remove_member),
        )
        .protected("/roles", get(roles::list).post(roles::create))
        .protected(
            "/roles/{id}",
            get(roles::show).put(roles::update).delete(roles::delete),
        )
        .build()
}
