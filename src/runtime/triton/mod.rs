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

use super::{Error, LoadRequest, Loaded, LoadedCopy, ModelRuntime, UnloadReason};
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

    /// The GPUs (engine indices) a READY Triton model's instances use;
    /// `known` are the copies the daemon made of it.
    async fn adopted_gpus(
        &self,
        triton: &str,
        known: &BTreeSet<u32>,
    ) -> Result<BTreeSet<u32>, Error> {
        let all = 0..self.settings.gpus.len() as u32;
        Ok(match self.settings.placement {
            // The copies the daemon made (bookkeeping over one Triton model);
            // one on the first GPU for a model it finds loaded: the
            // repository's placement is not the engine's to know.
            Placement::Repository if !known.is_empty() => known.clone(),
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

    /// What leases and slot containers are told: the client endpoint, not
    /// the daemon's own address of Triton.
    fn client_endpoint(&self) -> Option<&str> {
        Some(&self.settings.client_endpoint)
    }

    /// ServerLive, not ServerReady: Triton's ServerReady is false while any
    /// model is loading (its default `--strict-readiness`), which says
    /// nothing about whether it can take loads and serve the others.
    async fn ready(&self) -> Result<(), Error> {
        if self.client.server_live().await? {
            Ok(())
        } else {
            Err(Error::Unreachable {
                endpoint: self.settings.endpoint.clone(),
                message: "Triton answers but says it is not live".into(),
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
            runtime_model: triton,
            size_mib: None,
        })
    }

    /// Also called after a failed or timed-out load: then the GPU is not
    /// among the copies, and the model is unloaded (nothing else holds it)
    /// or put back to the copies that remain.
    ///
    /// At shutdown nothing is unloaded: models stay in Triton when the
    /// daemon stops, the next daemon adopts them, and clients keep their
    /// warm models through a daemon upgrade.
    async fn unload(&self, model: &str, gpu_uuid: &str, reason: UnloadReason) -> Result<(), Error> {
        if reason == UnloadReason::Shutdown {
            return Ok(());
        }
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

    /// Triton's READY catalog models and their GPUs. Each model is read
    /// under its own lock, so no load or unload of it is half done: what
    /// Triton says then is what the daemon's copies are. Models outside the
    /// catalog are left alone (external memory).
    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, Error> {
        let ready: BTreeSet<String> = self
            .client
            .index(true)
            .await?
            .into_iter()
            .filter(|m| m.state == "READY")
            .map(|m| m.name)
            .collect();
        for name in ready.iter().filter(|n| self.catalog_name(n).is_none()) {
            tracing::debug!(triton_model = %name,
                "Triton serves a model outside the catalog; leaving it alone (external memory)");
        }
        let candidates: Vec<(String, String)> = {
            let map = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
            self.settings
                .models
                .iter()
                // READY now, or loaded or unloaded by the daemon before
                // (its load or unload may be running now).
                .filter(|(_, t)| ready.contains(*t) || map.contains_key(*t))
                .map(|(m, t)| (m.clone(), t.clone()))
                .collect()
        };
        let mut out = Vec::new();
        for (model, triton) in candidates {
            let entry = self.entry(&triton);
            let mut copies = entry.lock().await;
            let gpus = if self.client.model_ready(&triton).await? {
                self.adopted_gpus(&triton, &copies).await?
            } else {
                BTreeSet::new()
            };
            if gpus.is_empty() && ready.contains(&triton) {
                tracing::debug!(triton_model = %triton, "Triton serves it on no GPU of this node; not adopted");
            }
            for &g in &gpus {
                out.push(LoadedCopy {
                    model: model.clone(),
                    gpu_uuid: self.settings.gpus[g as usize].clone(),
                    size_mib: 0,
                    endpoint: self.settings.client_endpoint.clone(),
                    runtime_model: triton.clone(),
                });
            }
            *copies = gpus;
        }
        Ok(out)
    }
}
