//! Who may call a route ([`Access`]), as a route declares it: the one fact about a route
//! that both the routes module (which mounts it) and admission (which enforces it) read.

use crate::auth::records::Company;
use crate::error::ApiResult;
use crate::state::AppState;

/// The owner of a published link, as its function's resolver found it, and what the
/// resolver read on the way (the platform knows nothing of dashboards): `extensions` are
/// added to the request, where the handler finds them.
#[derive(Debug)]
pub struct LinkOwner {
    pub company: Company,
    pub extensions: http::Extensions,
}

/// Finds the owner of the published link whose token is in the path; 404 when the link is
/// unknown, revoked, expired or switched off.
pub type ResolveLink =
    for<'a> fn(&'a AppState, &'a str) -> futures::future::BoxFuture<'a, ApiResult<LinkOwner>>;

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// No credentials (login, refresh, reset).
    Public,
    /// No credentials; the path's `{token}` names a published link, which the resolver turns
    /// into the owner company the request counts against (see [`crate::admission`]). The
    /// handler must only read: it runs while the request is counted.
    PublishedLink(ResolveLink),
    /// An authenticated caller, holding `permission` when there is one.
    Caller {
        permission: Option<&'static str>,
        /// Whether the handler may run while the credential is being verified.
        speculate: Speculate,
    },
}

/// Whether a caller's route runs its handler while admission verifies the credential and
/// counts the request, with the caller this instance verified last time for the same
/// credential (see [`crate::admission`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speculate {
    /// After admission only.
    Never,
    /// A read: the handler writes nothing and its answer depends only on the caller and
    /// stored data; the answer is kept only when verification yields the very same caller.
    Reads,
    /// A write whose database writes wait for admission's decision ([`crate::held`]): its
    /// reads overlap admission, its writes happen only once the request is admitted as the
    /// very caller the handler runs for; otherwise its answer is thrown away. For handlers
    /// whose only effects are the store's (database writes, and new files before them).
    Writes,
}

impl Access {
    pub const fn public() -> Self {
        Access::Public
    }

    pub const fn published_link(resolve: ResolveLink) -> Self {
        Access::PublishedLink(resolve)
    }

    /// A read any authenticated caller may make (what it shows is scoped to the caller);
    /// speculative.
    pub const fn read() -> Self {
        Access::Caller {
            permission: None,
            speculate: Speculate::Reads,
        }
    }

    /// Any authenticated caller, never speculative (writes on the caller's own things, and
    /// reads that report this very request, such as `GET /usage`).
    pub const fn caller() -> Self {
        Access::Caller {
            permission: None,
            speculate: Speculate::Never,
        }
    }

    /// An authenticated caller holding `permission`; never speculative.
    pub const fn needs(permission: &'static str) -> Self {
        Access::Caller {
            permission: Some(permission),
            speculate: Speculate::Never,
        }
    }

    /// The same access for a read that writes nothing ([`Speculate::Reads`]): with a
    /// permission, the handler runs while admission verifies the credential when the
    /// remembered caller holds it, and admission checks it again on the verified caller.
    pub const fn reads(self) -> Self {
        match self {
            Access::Caller { permission, .. } => Access::Caller {
                permission,
                speculate: Speculate::Reads,
            },
            other => other,
        }
    }

    /// The same access, with the handler's writes held until admission decides
    /// ([`Speculate::Writes`]), so its reads overlap admission's round trip.
    pub const fn held(self) -> Self {
        match self {
            Access::Caller { permission, .. } => Access::Caller {
                permission,
                speculate: Speculate::Writes,
            },
            other => other,
        }
    }

    /// The permission the route needs, if any.
    pub const fn permission(&self) -> Option<&'static str> {
        match self {
            Access::Caller { permission, .. } => *permission,
            _ => None,
        }
    }

    /// Whether anyone may call the route without a credential.
    pub const fn is_public(&self) -> bool {
        !self.needs_credentials()
    }

    /// Whether a credential is needed.
    pub const fn needs_credentials(&self) -> bool {
        matches!(self, Access::Caller { .. })
    }

    /// How the handler runs alongside admission.
    pub const fn speculation(&self) -> Speculate {
        match self {
            Access::Caller { speculate, .. } => *speculate,
            _ => Speculate::Never,
        }
    }
}
