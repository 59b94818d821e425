//! Who sends a request, and the one place a Kafka request is authorized:
//! every denial is logged (rate-limited, by the core's `Authorizer`) and
//! counted. Handlers authorize before they look a topic or group up, so a
//! denial never tells whether it exists. With authentication off the
//! authorizer allows everything.

use std::net::SocketAddr;

use brooklet_core::{Denied, Operation, Principal, Resource};

use crate::server::Context;

/// The sender of a request: its principal and address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller<'a> {
    /// The authenticated user; `None` without authentication.
    pub(crate) principal: Option<&'a Principal>,
    /// The client's address, for the log of a denial.
    pub(crate) peer: Option<SocketAddr>,
}

impl Caller<'_> {
    /// A caller with no principal and no address (allowed everything with
    /// authentication off, nothing with it on).
    #[cfg(test)]
    pub(crate) const NOBODY: Caller<'static> = Caller { principal: None, peer: None };

    /// `Ok` if the caller may do `operation` on `resource`; else the
    /// denial, logged and counted.
    pub(crate) fn check(
        &self,
        ctx: &Context,
        operation: Operation,
        resource: Resource<'_>,
    ) -> Result<(), Denied> {
        let authorizer = &ctx.options.authorizer;
        authorizer.check(self.principal, operation, resource).inspect_err(|denied| self.report(ctx, denied))
    }

    /// Logs and counts `denied`.
    pub(crate) fn report(&self, ctx: &Context, denied: &Denied) {
        ctx.options.authorizer.report_denial(denied, "kafka", self.peer);
    }

    /// Whether the caller may do `operation` on `resource`, for filtering
    /// a list: nothing is logged or counted.
    pub(crate) fn allows(&self, ctx: &Context, operation: Operation, resource: Resource<'_>) -> bool {
        ctx.options.authorizer.allows(self.principal, operation, resource)
    }
}
