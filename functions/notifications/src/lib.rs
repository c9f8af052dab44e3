//! The **notifications** function (API.md §6 notifications): channels a company's reports
//! and alerts are delivered to, alerts on Klips, and the deliveries made to them. It only writes
//! what is to be sent: the report worker sends, in attempts, through the egress guard.

mod alerts;
mod channels;
mod deliveries;

use axum::Router;
use domain::alerts::Alert;
use domain::notify::Channel;
use platform::assets::resource::{self, NothingElse};
use platform::routes::{route, Access, Function, Route, DELETE, GET, POST, PUT};
use platform::AppState;

pub const FUNCTION: Function = Function {
    name: "notifications",
    routes,
};

/// Every route of this function, each declared once. Channels need `channel.manage`;
/// deliveries (of channels' tests, reports and alerts) are read and retried with it or with
/// `alert.manage`.
pub fn routes() -> Vec<Route> {
    let manage = Access::needs("channel.manage");
    let alert = Access::needs("alert.manage");
    let deliveries = Access::needs("channel.manage|alert.manage");
    vec![
        route(GET, "/channels", channels::list, manage.reads()),
        route(POST, "/channels", channels::create, manage.held()),
        route(
            GET,
            "/channels/{id}",
            resource::show::<Channel>,
            manage.reads(),
        ),
        route(
            PUT,
            "/channels/{id}",
            resource::update::<Channel, channels::ChannelBody>,
            manage.held(),
        ),
        route(
            DELETE,
            "/channels/{id}",
            resource::delete::<Channel, NothingElse>,
            manage.held(),
        ),
        route(
            POST,
            "/channels/{id}/rotate-secret",
            channels::rotate_secret,
            manage.held(),
        ),
        route(POST, "/channels/{id}/test", channels::test, manage.held()),
        route(GET, "/alerts", alerts::list, alert.reads()),
        route(POST, "/alerts", alerts::create, alert.held()),
        route(GET, "/alerts/{id}", resource::show::<Alert>, alert.reads()),
        route(
            PUT,
            "/alerts/{id}",
            resource::update::<Alert, alerts::AlertBody>,
            alert.held(),
        ),
        route(
            DELETE,
            "/alerts/{id}",
            resource::delete::<Alert, NothingElse>,
            alert.held(),
        ),
        route(GET, "/alerts/{id}/events", alerts::events, alert.reads()),
        route(GET, "/deliveries", deliveries::list, deliveries.reads()),
        route(
            GET,
            "/deliveries/{id}",
            deliveries::show,
            deliveries.reads(),
        ),
        route(
            POST,
            "/deliveries/{id}/retry",
            deliveries::retry,
            deliveries.held(),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    platform::routes::router(state, routes())
}
