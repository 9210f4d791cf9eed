//! The NVML health watcher: a dedicated thread blocked in `nvmlEventSetWait`.
//!
//! The wait is a blocking FFI call, so it gets its own OS thread rather than
//! a slot in an async runtime. It waits in steps of at most
//! [`EVENT_WAIT_MS`] and checks a stop channel between steps, which bounds how
//! long dropping the [`HealthWatch`] takes. Nothing in the thread unwraps or
//! panics: NVML errors are logged (each distinct one once) and the loop
//! carries on, because a watcher that dies silently is worse than none.
//!
//! Registration happens on the thread (an `EventSet` borrows the `Nvml` the
//! thread owns) but `spawn` waits for its outcome, so once `watch_health`
//! returns every later event is seen.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread;
use std::time::Duration;

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::event::EventData;
use nvml_wrapper::{EventSet, Nvml};

use super::nvml::{HealthMap, Identity, is_device_fault, lock};
use super::{EVENT_WAIT_MS, Error, Health, HealthEvent, HealthSink, HealthWatch, xid};

/// The events that mean a GPU needs attention. Critical Xids cover nearly
/// every hardware fault; double-bit ECC errors are asked for separately
/// where the GPU supports them (ECC-less consumer boards do not).
fn wanted() -> EventTypes {
    EventTypes::CRITICAL_XID_ERROR | EventTypes::DOUBLE_BIT_ECC_ERROR
}

/// Starts a watcher thread for `gpus` and returns once it is registered.
pub(super) fn spawn(
    nvml: Arc<Nvml>,
    gpus: Vec<Identity>,
    health: Arc<HealthMap>,
    sink: HealthSink,
) -> Result<HealthWatch, Error> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let watcher = Watcher {
        gpus,
        health,
        sink,
        told: HashSet::new(),
        last_error: None,
    };
    let handle = thread::Builder::new()
        .name("gpu-health".into())
        .spawn(move || watcher.run(&nvml, &stop_rx, &ready_tx))
        .map_err(Error::WatchThread)?;
    if let Err(err) = ready_rx.recv().unwrap_or(Err(Error::WatchSetup)) {
        // The thread has returned or is returning; join so nothing leaks.
        let _ = handle.join();
        return Err(err);
    }
    Ok(HealthWatch::new(move || {
        // Dropping the sender is the stop signal: the thread sees the
        // channel disconnected at its next check.
        drop(stop_tx);
        // A sink that drops its own watch runs on the watcher thread, which
        // cannot join itself; it ends on its own once the sink returns.
        if handle.thread().id() == thread::current().id() {
            return;
        }
        if handle.join().is_err() {
            tracing::error!("GPU health watcher thread panicked");
        }
    }))
}

/// The thread's state.
struct Watcher {
    gpus: Vec<Identity>,
    health: Arc<HealthMap>,
    sink: HealthSink,
    /// UUIDs this watcher already reported unhealthy to its own sink. The
    /// shared map cannot answer that: another watcher may have marked the
    /// GPU first, and this sink must still hear about it.
    told: HashSet<String>,
    /// The last wait error logged, so a persistent one is logged once.
    last_error: Option<String>,
}

impl Watcher {
    fn run(mut self, nvml: &Nvml, stop: &Receiver<()>, ready: &SyncSender<Result<(), Error>>) {
        let set = match self.register(nvml) {
            Ok(Some(set)) => set,
            Ok(None) => {
                tracing::warn!(
                    "no GPU supports Xid events; GPU health comes from snapshot polling only"
                );
                let _ = ready.send(Ok(()));
                return;
            }
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while stop.try_recv() == Err(TryRecvError::Empty) {
            match set.wait(EVENT_WAIT_MS) {
                Ok(event) => {
                    self.last_error = None;
                    self.on_event(&event);
                }
                Err(NvmlError::Timeout) => self.last_error = None,
                Err(err) => {
                    if matches!(err, NvmlError::GpuLost) {
                        self.find_lost(nvml);
                    }
                    self.log_wait_error(&err);
                    // A failing wait may fail at once, every time: pause
                    // (while still listening for stop) instead of spinning.
                    let pause = Duration::from_millis(u64::from(EVENT_WAIT_MS));
                    if stop.recv_timeout(pause) != Err(RecvTimeoutError::Timeout) {
                        break;
                    }
                }
            }
        }
    }

    /// Registers every GPU for the wanted events it supports; `None` when no
    /// GPU supports any.
    ///
    /// `register_events` frees the whole set when it fails for one GPU, so a
    /// failure drops that GPU from the plan and the set is built again.
    fn register<'n>(&self, nvml: &'n Nvml) -> Result<Option<EventSet<'n>>, Error> {
        let mut plan: Vec<(u32, EventTypes)> = self
            .gpus
            .iter()
            .filter_map(|gpu| supported(nvml, gpu.index).map(|types| (gpu.index, types)))
            .collect();
        while !plan.is_empty() {
            match build_set(nvml, &plan)? {
                Ok(set) => return Ok(Some(set)),
                Err((position, err)) => {
                    let (index, _) = plan.remove(position);
                    tracing::warn!(gpu = index, error = %err, "cannot register for Xid events; this GPU's health comes from snapshot polling only");
                }
            }
        }
        Ok(None)
    }

    fn on_event(&mut self, event: &EventData<'_>) {
        let Some(reason) = unhealthy_reason(event) else {
            return;
        };
        let uuid = match event.device.uuid() {
            Ok(uuid) => uuid,
            Err(err) => {
                // Which GPU is unknown; like NVIDIA's device plugin, treat
                // them all as suspect rather than keep using a broken one.
                tracing::error!(error = %err, %reason, "cannot tell which GPU raised an event; marking every GPU unhealthy");
                let all: Vec<(u32, String)> = self
                    .gpus
                    .iter()
                    .map(|g| (g.index, g.uuid.clone()))
                    .collect();
                for (index, uuid) in all {
                    self.mark_unhealthy(index, &uuid, &reason);
                }
                return;
            }
        };
        match self.gpus.iter().find(|g| g.uuid == uuid).map(|g| g.index) {
            Some(index) => self.mark_unhealthy(index, &uuid, &reason),
            None => tracing::warn!(%uuid, %reason, "event from a GPU outside the inventory"),
        }
    }

    /// After a wait reported a lost GPU: find which ones stopped answering.
    fn find_lost(&mut self, nvml: &Nvml) {
        let mut lost = Vec::new();
        for gpu in &self.gpus {
            let probe = nvml
                .device_by_index(gpu.index)
                .and_then(|d| d.memory_info());
            if let Err(err) = probe
                && is_device_fault(&err)
            {
                lost.push((gpu.index, gpu.uuid.clone(), format!("GPU lost: {err}")));
            }
        }
        for (index, uuid, reason) in lost {
            self.mark_unhealthy(index, &uuid, &reason);
        }
    }

    /// Records the GPU as unhealthy (the first reason sticks) and tells this
    /// watcher's sink, once.
    fn mark_unhealthy(&mut self, index: u32, uuid: &str, reason: &str) {
        let health = lock(&self.health)
            .entry(uuid.to_owned())
            .or_insert_with(|| Health::Unhealthy(reason.to_owned()))
            .clone();
        if !self.told.insert(uuid.to_owned()) {
            tracing::warn!(gpu = index, %uuid, %reason, "another error on a GPU already unhealthy");
            return;
        }
        tracing::warn!(gpu = index, %uuid, ?health, "GPU marked unhealthy");
        let event = HealthEvent {
            uuid: uuid.to_owned(),
            index,
            health,
        };
        // A panicking sink is the caller's bug; it must not end health
        // watching for every later event.
        if catch_unwind(AssertUnwindSafe(|| (self.sink)(event))).is_err() {
            tracing::error!(gpu = index, "health sink panicked");
        }
    }

    fn log_wait_error(&mut self, err: &NvmlError) {
        let text = err.to_string();
        if self.last_error.as_deref() != Some(text.as_str()) {
            tracing::error!(error = %text, "waiting for GPU events failed; retrying");
            self.last_error = Some(text);
        }
    }
}

/// The wanted events a GPU supports, `None` (with a log) when none are.
fn supported(nvml: &Nvml, index: u32) -> Option<EventTypes> {
    let supported = nvml
        .device_by_index(index)
        .and_then(|device| device.supported_event_types());
    let types = match supported {
        Ok(types) => types & wanted(),
        Err(NvmlError::NotSupported) => EventTypes::empty(),
        Err(err) => {
            tracing::warn!(gpu = index, error = %err, "cannot read supported event types; this GPU's health comes from snapshot polling only");
            return None;
        }
    };
    if types.is_empty() {
        tracing::warn!(
            gpu = index,
            "GPU does not report Xid events; its health comes from snapshot polling only"
        );
        return None;
    }
    Some(types)
}

/// One attempt at a set with every planned registration: the set, or the
/// position in `plan` that failed (the set is gone then). `Err` when no set
/// can be created at all.
fn build_set<'n>(
    nvml: &'n Nvml,
    plan: &[(u32, EventTypes)],
) -> Result<Result<EventSet<'n>, (usize, NvmlError)>, Error> {
    let mut set = nvml.create_event_set().map_err(|source| Error::Nvml {
        call: "create_event_set",
        index: None,
        source,
    })?;
    for (position, &(index, types)) in plan.iter().enumerate() {
        let device = match nvml.device_by_index(index) {
            Ok(device) => device,
            Err(err) => return Ok(Err((position, err))),
        };
        set = match device.register_events(types, set) {
            Ok(set) => set,
            Err(err) => return Ok(Err((position, err.error))),
        };
    }
    Ok(Ok(set))
}

/// Why an event makes its GPU unhealthy; `None` for application Xids.
fn unhealthy_reason(event: &EventData<'_>) -> Option<String> {
    if event.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
        return match event.event_data {
            Some(XidError::Value(code)) if xid::is_application_error(code) => {
                tracing::info!(xid = code, meaning = ?xid::meaning(code), "application Xid; GPU stays healthy");
                None
            }
            Some(XidError::Value(code)) => Some(xid::reason(code)),
            Some(XidError::Unknown) | None => Some("Xid of unknown code".to_owned()),
        };
    }
    if event.event_type.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) {
        return Some("double-bit ECC error".to_owned());
    }
    None
}
