//! Routes, each declared once.
//!
//! A function lists its routes as [`Route`]s:
//!
//! ```ignore
//! route(GET, "/dashboards/{id}", dashboards::show, Access::read())
//! ```
//!
//! and that one line is everything the rest of the code knows about the route: [`router`]
//! mounts the handler and puts the admission pipeline ([`crate::admission`]) in front of it
//! with the route's [`Access`]; the OpenAPI test, the permission-matrix test, the template
//! test and `docs/API.md`'s test read the same declarations. A method a path does not
//! declare is answered by axum's own 405 (with `Allow`), rendered as error JSON by the edge.

pub use crate::access::Access;
use crate::admission::{self, Gate};
use crate::state::AppState;
use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};
use http::Method;

pub const GET: Method = Method::GET;
pub const POST: Method = Method::POST;
pub const PUT: Method = Method::PUT;
pub const DELETE: Method = Method::DELETE;

/// One route: method, path (axum syntax, after the edge's rewriting), handler and access.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("access", &self.access)
            .finish()
    }
}

/// Declares a route. Panics for a method axum cannot route (a programming error that every
/// test meets, since every test builds the routers).
pub fn route<H, T>(method: Method, path: &'static str, handler: H, access: Access) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("{method} {path}: not a method axum routes"));
    Route {
        method,
        path,
        access,
        handler: on(filter, handler),
    }
}

/// A Lambda function: its binary name (the template's `BuildProperties.Binary`) and routes.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub name: &'static str,
    pub routes: fn() -> Vec<Route>,
}

/// Mounts `routes`, each behind the admission pipeline its access asks for.
pub fn router(state: AppState, routes: Vec<Route>) -> axum::Router {
    let mut router = axum::Router::new();
    for route in routes {
        // A public route passes admission untouched but for its route in the log line.
        let handler = route
            .handler
            .route_layer(axum::middleware::from_fn_with_state(
                Gate::new(state.clone(), route.access, route.path),
                admission::admit,
            ));
        router = router.route(route.path, handler);
    }
    router.with_state(state)
}
