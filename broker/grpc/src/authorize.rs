//! Authorization of gRPC calls: each call names the (operation, resource)
//! it needs (docs/security.md lists them) and asks the core's `Authorizer`
//! before it looks anything up, so a denial never says whether a topic or
//! group exists. A denial is logged (rate-limited) and counted here, in one
//! place; lists are filtered with `allows`, which does neither.

use std::net::SocketAddr;

use brooklet_core::{Denied, Error, Operation, Principal, Resource};
use tonic::{Request, Status};

use crate::Services;
use crate::auth;
use crate::connection::ConnInfo;
use crate::status::status;

/// Who sent a request: its principal (with `--auth required`) and address.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) principal: Option<Principal>,
    peer: Option<SocketAddr>,
}

impl Caller {
    /// The caller of `request`, taken before the request is consumed.
    pub(crate) fn of<T>(request: &Request<T>) -> Caller {
        Caller { principal: auth::principal_of(request).cloned(), peer: ConnInfo::remote_of(request) }
    }

    /// The principal for a log line: `User:alice`, or `-` without one.
    pub(crate) fn name(&self) -> String {
        self.principal.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
    }
}

impl Services {
    /// `Ok` if `caller` may do `operation` on `resource`; else the denial,
    /// logged and counted, as PERMISSION_DENIED (UNAUTHENTICATED without a
    /// principal).
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        resource: Resource<'_>,
    ) -> Result<(), Status> {
        self.authorizer
            .check(caller.principal.as_ref(), operation, resource)
            .map_err(|d| self.denied(caller, d))
    }

    /// Whether `caller` may do `operation` on `resource`, for filtering a
    /// list: nothing is logged or counted.
    pub(crate) fn allows(&self, caller: &Caller, operation: Operation, resource: Resource<'_>) -> bool {
        self.authorizer.allows(caller.principal.as_ref(), operation, resource)
    }

    /// Logs and counts `denied`, and makes it a status.
    pub(crate) fn denied(&self, caller: &Caller, denied: Denied) -> Status {
        self.authorizer.report_denial(&denied, "grpc", caller.peer);
        status(Error::Denied(denied))
    }
}
