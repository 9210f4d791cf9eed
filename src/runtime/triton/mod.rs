//! Triton Inference Server as the model runtime, driven in
//! `--model-control-mode=explicit` over its gRPC API.
//!
//! # Copies and Triton models
//! The engine thinks in copies: one model on one GPU. Triton thinks in
//! models, each with instance groups. A catalog model is **one Triton
//! model**; its copies are the GPUs its instance group lists. Adding the
//! copy on GPU 1 to a model serving on GPU 0 reloads it with
//! `instance_group [{kind: KIND_GPU, gpus: [0, 1]}]`; removing it reloads
//! with `gpus: [0]`, and only the last copy's removal unloads the model.
//! Because only `instance_group` changes between those configs, Triton
//! updates the model in place: the GPU 0 instances keep running (no second
//! copy of the weights on GPU 0, no downtime) and requests in flight finish.
//! The alternative, named copies (`yolo@gpu1`), would need one repository
//! directory per GPU and clients that pick a name; Triton already balances
//! one name over its instances.
//!
//! Triton takes a `config` override *instead of* config.pbtxt, so a pinned
//! load sends the repository's whole config (read from
//! `runtime.model_repository` and converted, [`pbtxt`]) with a new
//! `instance_group`. [`Placement`] says when that happens.
//!
//! # Adopt or external
//! At start [`ModelRuntime::list_loaded`] reads Triton's READY models. A
//! model of the catalog is **adopted**: its copies (the GPUs of its
//! instance group) enter the ledger as idle residents, warm for admissions
//! and evictable like any copy. A model outside the catalog is left alone
//! as **external**: the daemon never unloads it, and on NVML its memory
//! shows up as memory other processes use.
//!
//! # Unloads
//! Triton's unload answers at once and the model stays `UNLOADING` until its
//! in-flight requests end; the runtime waits for the index to say it is gone,
//! so that the memory is free before the engine's next load on that GPU.

mod client;
pub mod pbtxt;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;

use super::{Error, LoadRequest, Loaded, LoadedCopy, ModelRuntime};
use crate::proto::inference::model_instance_group::Kind;
use client::Client;

/// How often the index is read while an unload finishes.
const UNLOAD_POLL: Duration = Duration::from_millis(50);

/// How copies become Triton instance groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The repository's config stands; a copy is bookkeeping over one Triton
    /// model (simulated GPUs, or no `model_repository` to read configs from).
    Repository,
    /// Each copy is `KIND_GPU` instances on its GPU (NVML: the engine's GPU
    /// index is the CUDA ordinal, with `CUDA_DEVICE_ORDER=PCI_BUS_ID`).
    Gpu,
    /// Each copy is one `KIND_CPU` instance: the same reloads as `Gpu`
    /// without a GPU (CPU-only nodes with simulated GPUs, and tests).
    CpuInstances,
}

/// Everything [`TritonRuntime::new`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Triton's gRPC address as the daemon dials it.
    pub endpoint: String,
    /// What leases tell clients.
    pub client_endpoint: String,
    /// Triton's model repository as the daemon reads it (pinned placements).
    pub model_repository: Option<PathBuf>,
    /// Catalog name → Triton name, for every catalog model.
    pub models: BTreeMap<String, String>,
    /// GPU UUIDs by engine index (= Triton's GPU id with `Placement::Gpu`).
    pub gpus: Vec<String>,
    pub placement: Placement,
    /// How long an unload may take to finish.
    pub unload_timeout: Duration,
}

/// The Triton runtime. See the module docs.
pub struct TritonRuntime {
    client: Client,
    settings: Settings,
    /// Triton name → the GPUs (engine indices) holding the daemon's copies.
    /// The async lock serialises loads and unloads of one Triton model
    /// (the shell runs one worker per GPU, so two GPUs may race on a model).
    copies: Mutex<HashMap<String, Arc<tokio::sync::Mutex<BTreeSet<u32>>>>>,
}

impl TritonRuntime {
    pub fn new(settings: Settings) -> Result<TritonRuntime, Error> {
        if settings.placement != Placement::Repository && settings.model_repository.is_none() {
            return Err(Error::Refused(
                "pinning copies needs runtime.model_repository (to read config.pbtxt)".into(),
            ));
        }
        Ok(TritonRuntime {
            client: Client::new(&settings.endpoint)?,
            settings,
            copies: Mutex::new(HashMap::new()),
        })
    }

    pub fn placement(&self) -> Placement {
        self.settings.placement
    }

    fn triton_name(&self, model: &str) -> String {
        self.settings
            .models
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_owned())
    }

    fn catalog_name(&self, triton: &str) -> Option<&str> {
        self.settings
            .models
            .iter()
            .find(|(_, t)| *t == triton)
            .map(|(m, _)| m.as_str())
    }

    fn gpu_index(&self, uuid: &str) -> Result<u32, Error> {
        self.settings
            .gpus
            .iter()
            .position(|g| g == uuid)
            .map(|i| i as u32)
            .ok_or_else(|| Error::Refused(format!("unknown GPU {uuid}")))
    }

    fn entry(&self, triton: &str) -> Arc<tokio::sync::Mutex<BTreeSet<u32>>> {
        let mut map = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(triton.to_owned()).or_default())
    }

    /// The JSON config that places `triton`'s instances on `gpus`.
    async fn pinned_config(&self, triton: &str, gpus: &BTreeSet<u32>) -> Result<String, Error> {
        let repo = self.settings.model_repository.as_ref().ok_or_else(|| {
            Error::Refused("pinning copies needs runtime.model_repository".into())
        })?;
        let path = repo.join(triton).join("config.pbtxt");
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
            Error::Refused(format!(
                "cannot pin {triton} to GPUs {gpus:?}: {}: {e}",
                path.display()
            ))
        })?;
        let mut config = pbtxt::to_json(&text)
            .map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
        let group = match self.settings.placement {
            Placement::Gpu => {
                // Instances per GPU as the repository asks (default 1).
                let per_gpu = config
                    .get("instance_group")
                    .and_then(|g| g.get(0))
                    .and_then(|g| g.get("count"))
                    .and_then(|c| c.as_u64())
                    .filter(|c| *c > 0)
                    .unwrap_or(1);
                json!([{ "kind": "KIND_GPU", "count": per_gpu, "gpus": gpus }])
            }
            Placement::CpuInstances => json!([{ "kind": "KIND_CPU", "count": gpus.len() }]),
            Placement::Repository => unreachable!("the repository placement sends no config"),
        };
        config.insert("instance_group".into(), group);
        Ok(serde_json::Value::Object(config).to_string())
    }

    /// Unloads `triton` and waits until Triton's index no longer lists it
    /// as loaded. A load that finishes meanwhile (one the shell gave up on)
    /// is unloaded again.
    async fn unload_fully(&self, triton: &str) -> Result<(), Error> {
        self.client.unload(triton).await?;
        let deadline = tokio::time::Instant::now() + self.settings.unload_timeout;
        loop {
            let state = self
                .client
                .index(false)
                .await?
                .into_iter()
                .find(|m| m.name == triton)
                .map(|m| m.state)
                .unwrap_or_default();
            match state.as_str() {
                "LOADING" | "UNLOADING" => {}
                "READY" => self.client.unload(triton).await?,
                _ => return Ok(()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Refused(format!(
                    "{triton} is still {state} {}s after its unload",
                    self.settings.unload_timeout.as_secs()
                )));
            }
            tokio::time::sleep(UNLOAD_POLL).await;
        }
    }

    /// The GPUs (engine indices) a READY Triton model's instances use.
    async fn adopted_gpus(&self, triton: &str) -> Result<BTreeSet<u32>, Error> {
        let all = 0..self.settings.gpus.len() as u32;
        Ok(match self.settings.placement {
            // One copy, on the first GPU: the repository's placement is not
            // the engine's to know.
            Placement::Repository => all.take(1).collect(),
            Placement::Gpu => {
                let config = self.client.model_config(triton).await?;
                let mut gpus = BTreeSet::new();
                for g in config.instance_group {
                    if g.kind() != Kind::Gpu {
                        continue;
                    }
                    if g.gpus.is_empty() {
                        gpus.extend(all.clone());
                    }
                    gpus.extend(g.gpus.iter().filter_map(|&i| u32::try_from(i).ok()));
                }
                gpus.retain(|i| (*i as usize) < self.settings.gpus.len());
                gpus
            }
            Placement::CpuInstances => {
                let config = self.client.model_config(triton).await?;
                let n: i32 = config
                    .instance_group
                    .iter()
                    .filter(|g| g.kind() == Kind::Cpu)
                    .map(|g| g.count.max(1))
                    .sum();
                all.take(n.max(0) as usize).collect()
            }
        })
    }
}

#[tonic::async_trait]
impl ModelRuntime for TritonRuntime {
    fn kind(&self) -> &'static str {
        "triton"
    }

    /// What leases name: the client endpoint, not the daemon's own.
    #[allow(clippy::misnamed_getters)]
    fn endpoint(&self) -> &str {
        &self.settings.client_endpoint
    }

    /// Models stay in Triton when the daemon stops: the next daemon adopts
    /// them and clients keep their warm models through a daemon upgrade.
    fn unload_on_shutdown(&self) -> bool {
        false
    }

    async fn ready(&self) -> Result<(), Error> {
        if self.client.server_ready().await? {
            Ok(())
        } else {
            Err(Error::Unreachable {
                endpoint: self.settings.endpoint.clone(),
                message: "Triton is live but not ready".into(),
            })
        }
    }

    async fn load(&self, req: LoadRequest) -> Result<Loaded, Error> {
        let triton = self.triton_name(&req.model);
        let entry = self.entry(&triton);
        let mut copies = entry.lock().await;
        match self.settings.placement {
            Placement::Repository => {
                let loaded = !copies.is_empty() && self.client.model_ready(&triton).await?;
                if !loaded {
                    self.client.load(&triton, None).await?;
                }
            }
            Placement::Gpu | Placement::CpuInstances => {
                let mut next = copies.clone();
                next.insert(req.gpu_index);
                let config = self.pinned_config(&triton, &next).await?;
                self.client.load(&triton, Some(config)).await?;
            }
        }
        copies.insert(req.gpu_index);
        Ok(Loaded {
            endpoint: self.settings.client_endpoint.clone(),
        })
    }

    /// Also called after a failed or timed-out load: then the GPU is not
    /// among the copies, and the model is unloaded (nothing else holds it)
    /// or put back to the copies that remain.
    async fn unload(&self, model: &str, gpu_uuid: &str) -> Result<(), Error> {
        let gpu = self.gpu_index(gpu_uuid)?;
        let triton = self.triton_name(model);
        let entry = self.entry(&triton);
        let mut copies = entry.lock().await;
        copies.remove(&gpu);
        if copies.is_empty() {
            return self.unload_fully(&triton).await;
        }
        if self.settings.placement != Placement::Repository {
            let config = self.pinned_config(&triton, &copies).await?;
            self.client.load(&triton, Some(config)).await?;
        }
        Ok(())
    }

    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, Error> {
        let ready = self.client.index(true).await?;
        let mut found: HashMap<String, BTreeSet<u32>> = HashMap::new();
        let mut out = Vec::new();
        for m in ready.into_iter().filter(|m| m.state == "READY") {
            let Some(model) = self.catalog_name(&m.name).map(str::to_owned) else {
                tracing::info!(triton_model = %m.name,
                    "Triton serves a model outside the catalog; leaving it alone (external memory)");
                continue;
            };
            let gpus = self.adopted_gpus(&m.name).await?;
            if gpus.is_empty() {
                tracing::info!(triton_model = %m.name, "Triton serves it on no GPU of this node; not adopted");
                continue;
            }
            for &g in &gpus {
                out.push(LoadedCopy {
                    model: model.clone(),
                    gpu_uuid: self.settings.gpus[g as usize].clone(),
                    size_mib: 0,
                    endpoint: self.settings.client_endpoint.clone(),
                });
            }
            found.insert(m.name, gpus);
        }
        // What Triton holds now is what the daemon holds.
        let entries: Vec<(String, Arc<tokio::sync::Mutex<BTreeSet<u32>>>)> = {
            let mut map = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
            for name in found.keys() {
                map.entry(name.clone()).or_default();
            }
            map.iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        for (name, entry) in entries {
            *entry.lock().await = found.remove(&name).unwrap_or_default();
        }
        Ok(out)
    }
}
