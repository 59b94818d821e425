//! Generates the server side of `brooklet.v1.ConsumerService` with the wire
//! types of `src/wire.rs` for Fetch and Subscribe, whose records are the
//! stored encodings served as they are. Pure Rust: no `.proto` file is read
//! and no `protoc` is needed.

use tonic_prost_build::manual::{Builder, Method, Service};

fn main() {
    let codec = "tonic_prost::ProstCodec";
    let service = Service::builder()
        .name("ConsumerService")
        .package("brooklet.v1")
        .method(
            Method::builder()
                .name("fetch")
                .route_name("Fetch")
                .input_type("brooklet_proto::v1::FetchRequest")
                .output_type("crate::wire::FetchResponse")
                .codec_path(codec)
                .build(),
        )
        .method(
            Method::builder()
                .name("subscribe")
                .route_name("Subscribe")
                .input_type("brooklet_proto::v1::SubscribeRequest")
                .output_type("crate::wire::SubscribeResponse")
                .codec_path(codec)
                .server_streaming()
                .build(),
        )
        .method(
            Method::builder()
                .name("list_offsets")
                .route_name("ListOffsets")
                .input_type("brooklet_proto::v1::ListOffsetsRequest")
                .output_type("brooklet_proto::v1::ListOffsetsResponse")
                .codec_path(codec)
                .build(),
        )
        .build();
    Builder::new().build_client(false).compile(&[service]);
}
