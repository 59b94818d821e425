//! Compiles `brooklet/v1/*.proto` with protox (pure Rust), so the build needs no
//! system `protoc`. The file descriptor set is kept for server reflection.

use std::path::PathBuf;

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["brooklet/v1/brooklet.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("brooklet_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Data paths carry `bytes::Bytes`: decoding from a `Bytes` buffer
        // slices it instead of copying each key and value.
        .bytes(".brooklet.v1")
        .compile_fds(fds)?;
    Ok(())
}
