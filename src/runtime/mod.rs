//! Model runtimes: where weights are really loaded.
//!
//! The engine decides *that* a model copy is loaded or unloaded; a
//! [`ModelRuntime`] does it. Two implementations:
//! - [`Bookkeeping`] (default): no model server; the daemon keeps the memory
//!   ledger and pods run their own model code. Optionally a load takes the
//!   catalog's `load_ms` (demos, the dev config).
//! - `GrpcRuntime`: a node-local model server implementing
//!   `vision.v1.ModelRuntime` (proto/vision/v1/runtime.proto), in the spirit
//!   of KServe ModelMesh's model-runtime SPI.
//! - [`TritonRuntime`]: Triton Inference Server in explicit model-control
//!   mode, driven over its own gRPC API ([`triton`]).

mod grpc;
pub mod triton;

use std::time::Duration;

pub(crate) use grpc::GrpcRuntime;
pub use triton::TritonRuntime;

use crate::config::{Config, RuntimeKind};

/// One load the engine asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    pub model: String,
    pub gpu_uuid: String,
    pub gpu_index: u32,
    pub weights_mib: u64,
    pub load_id: u64,
    /// The catalog's expected load time.
    pub expected: Duration,
}

/// A finished load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded {
    /// Where tasks reach this copy; "" when the runtime serves none.
    pub endpoint: String,
    /// The runtime's own name for the model (Triton's model name), what
    /// clients put in their inference requests; "" when it names none.
    pub runtime_model: String,
    /// What the copy really occupies, when the runtime itself knows (the
    /// SPI's `size_mib`); `None` leaves the measuring to the daemon.
    pub size_mib: Option<u64>,
}

/// A copy the runtime holds (its answer to ListLoaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedCopy {
    pub model: String,
    pub gpu_uuid: String,
    pub size_mib: u64,
    pub endpoint: String,
    /// As in [`Loaded::runtime_model`].
    pub runtime_model: String,
}

/// Why the daemon unloads a copy, as the runtime hears it: a runtime may
/// treat them differently (Triton keeps its copies when the daemon shuts
/// down, so that the next daemon adopts them warm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnloadReason {
    /// Evicted to make room (for a model, a vram carve-out, other processes).
    Evicted,
    /// An operator asked (`visionctl evict`).
    Operator,
    /// Its GPU turned unhealthy.
    GpuUnhealthy,
    /// The daemon is shutting down.
    Shutdown,
    /// Its load failed, timed out or was cancelled: whatever the runtime
    /// made of it must go, since the ledger no longer counts it.
    LoadFailed,
}

impl UnloadReason {
    /// The SPI's word for it (`UnloadModelRequest.reason`), also in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            UnloadReason::Evicted => "evicted",
            UnloadReason::Operator => "operator",
            UnloadReason::GpuUnhealthy => "gpu_unhealthy",
            UnloadReason::Shutdown => "shutdown",
            UnloadReason::LoadFailed => "load_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("model runtime at {endpoint} is unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("model runtime refused: {0}")]
    Refused(String),
    #[error("invalid model runtime endpoint {endpoint:?}: {message}")]
    BadEndpoint { endpoint: String, message: String },
}

/// Loads and unloads model copies. Calls for one GPU arrive one at a time, in
/// the engine's order.
#[tonic::async_trait]
pub trait ModelRuntime: Send + Sync + 'static {
    /// `bookkeeping`, `grpc` or `triton`, for logs and status.
    fn kind(&self) -> &'static str;

    /// Where pods reach the runtime's inference API when it is one place
    /// for the whole node (Triton's client endpoint): Allocate hands it to
    /// slot containers as `VISION_RUNTIME_ENDPOINT`. `None` when the
    /// runtime serves nothing, or each copy names its own endpoint (the
    /// SPI's LoadModel answer, which leases carry).
    fn client_endpoint(&self) -> Option<&str> {
        None
    }

    /// Whether the runtime holds copies of its own: a load puts weights on
    /// the GPU through it (so the daemon can measure what it took), and its
    /// `list_loaded` is the truth the ledger is reconciled with (and its
    /// reachability watched). The bookkeeping runtime holds none: pods load
    /// their own weights, and the ledger is the only record.
    fn holds_copies(&self) -> bool {
        true
    }

    async fn load(&self, req: LoadRequest) -> Result<Loaded, Error>;

    /// Drops a copy. `reason` lets a runtime keep copies that should
    /// outlive the daemon ([`UnloadReason::Shutdown`]).
    async fn unload(&self, model: &str, gpu_uuid: &str, reason: UnloadReason) -> Result<(), Error>;

    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, Error>;

    /// Whether the runtime answers (Triton: ServerLive; the SPI: a
    /// ListLoaded that answers). The node's reachability watch calls it; an
    /// error means the runtime is lost (`node::reach` says what that does).
    async fn ready(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The ledger-only runtime.
#[derive(Debug, Clone, Default)]
pub struct Bookkeeping {
    /// Make each load take the catalog's `load_ms`.
    pub simulate_load_time: bool,
}

#[tonic::async_trait]
impl ModelRuntime for Bookkeeping {
    fn kind(&self) -> &'static str {
        "bookkeeping"
    }

    fn holds_copies(&self) -> bool {
        false
    }

    async fn load(&self, req: LoadRequest) -> Result<Loaded, Error> {
        if self.simulate_load_time {
            // Standing in for the time real weights take to reach the GPU.
            tokio::time::sleep(req.expected).await;
        }
        Ok(Loaded::default())
    }

    async fn unload(
        &self,
        _model: &str,
        _gpu_uuid: &str,
        _reason: UnloadReason,
    ) -> Result<(), Error> {
        Ok(())
    }

    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, Error> {
        Ok(Vec::new())
    }
}

/// What a runtime needs to know of the node's GPUs.
#[derive(Debug, Clone)]
pub struct Gpus {
    pub backend: crate::gpu::Backend,
    /// UUIDs by engine index.
    pub uuids: Vec<String>,
}

/// Builds the configured runtime.
pub fn from_config(config: &Config, gpus: &Gpus) -> Result<Box<dyn ModelRuntime>, Error> {
    let cfg = &config.runtime;
    Ok(match &cfg.kind {
        RuntimeKind::Bookkeeping { simulate_load_time } => Box::new(Bookkeeping {
            simulate_load_time: *simulate_load_time,
        }),
        RuntimeKind::Grpc { endpoint } => Box::new(GrpcRuntime::new(endpoint)?),
        RuntimeKind::Triton(t) => {
            let placement = match (gpus.backend, &t.model_repository) {
                (crate::gpu::Backend::Nvml, Some(_)) => triton::Placement::Gpu,
                (crate::gpu::Backend::Nvml, None) => {
                    tracing::warn!(
                        "runtime.model_repository is not set: Triton copies are not pinned to the \
                         GPU the daemon chose; the repository's instance_group decides"
                    );
                    triton::Placement::Repository
                }
                (crate::gpu::Backend::Simulated, _) => triton::Placement::Repository,
            };
            Box::new(TritonRuntime::new(triton::Settings {
                endpoint: t.endpoint.clone(),
                client_endpoint: t.client_endpoint.clone(),
                model_repository: t.model_repository.clone(),
                models: config
                    .models
                    .iter()
                    .map(|m| (m.name.clone(), t.triton_name(&m.name).to_owned()))
                    .collect(),
                gpus: gpus.uuids.clone(),
                placement,
                unload_timeout: cfg.load_timeout,
            })?)
        }
    })
}
