//! Generates the gRPC code for our protos (admission, model runtime), for
//! the two kubelet APIs we speak (device plugin v1beta1, PodResources v1)
//! and for the part of Triton's gRPC API the Triton runtime drives,
//! servers and clients of each: the daemon serves DevicePlugin and calls
//! Registration and PodResourcesLister; the tests' fake kubelet does the
//! opposite.
//!
//! protoc: `$PROTOC` when set (e.g. Debian's protobuf-compiler), otherwise the
//! binary vendored by `protoc-bin-vendored`, so a fresh machine with only
//! cargo builds the crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/vision/v1/admission.proto",
        "proto/vision/v1/runtime.proto",
        "proto/k8s/deviceplugin/v1beta1/api.proto",
        "proto/k8s/podresources/v1/api.proto",
        "proto/triton/grpc_service.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut cfg = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // visionctl prints any response as JSON.
        .type_attribute(".vision.v1", "#[derive(serde::Serialize)]")
        .compile_with_config(cfg, &protos, &["proto"])?;
    Ok(())
}
