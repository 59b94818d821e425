//! Brooklet's wire protocol: the generated gRPC code for `brooklet.v1`, the
//! encoded file descriptor set (for server reflection), and the key → partition
//! mapping that broker and client must agree on.
//!
//! This crate knows nothing of storage or of the client's public types.

pub use brooklet_partitioner as partitioner;

/// The `brooklet.v1` messages and services.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("brooklet.v1");
}

/// The encoded `FileDescriptorSet` of every Brooklet `.proto` file.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("brooklet_descriptor");
