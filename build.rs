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
    commit();
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
        // A watch event's kind as `"type": "model_loaded"` beside its fields
        // (visionctl lifts them beside `seq` and `at_ms`).
        .type_attribute(
            ".vision.v1.WatchEvent.event",
            "#[serde(tag = \"type\", rename_all = \"snake_case\")]",
        )
        .compile_with_config(cfg, &protos, &["proto"])?;
    Ok(())
}

/// `VISION_GIT_COMMIT` for `vision_build_info{commit}`: the variable when the
/// build sets it (an image built without `.git`), else `git rev-parse`,
/// else `unknown`. Reruns when HEAD or the branch it names moves.
fn commit() {
    println!("cargo:rerun-if-env-changed=VISION_GIT_COMMIT");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = std::env::var("VISION_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VISION_GIT_COMMIT={commit}");
    if let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch])
        && std::path::Path::new(&file).exists()
    {
        println!("cargo:rerun-if-changed={file}");
    }
}
