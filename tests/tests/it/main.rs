//! Brooklet's integration tests: one binary, one harness (`brooklet_tests`).

mod api;
mod cli;
mod client;
mod crash;
mod groups_api;
mod idempotence;
mod retention;
