//! Brooklet's integration tests: one binary, one harness (`brooklet_tests`).

mod acl;
mod api;
mod auth;
mod bench_cli;
mod breaker;
mod cli;
mod client;
mod console;
mod crash;
mod disk_full;
mod exhaustion;
mod groups_api;
mod groups_client;
mod idempotence;
mod kafka;
mod kafka_acl;
mod kafka_admin;
mod kafka_client_groups;
mod kafka_clients;
mod kafka_groups;
mod metrics;
mod overload;
mod producer_drop;
mod retention;
mod tls;
mod tls_auth;
