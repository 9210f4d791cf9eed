//! The typed error of the GPU module.
//!
//! Every variant names what failed (the NVML call, the GPU index, the library
//! path) so that an operator reading one log line knows where to look. NVML's
//! own error is kept as the `source`, not repeated in `Display`, so that
//! `anyhow`'s `{:#}` prints each cause exactly once; [`chain`] renders the
//! whole chain for the places that need one string.

use nvml_wrapper::error::NvmlError;

use super::Backend;

/// What went wrong in GPU discovery or health watching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `libnvidia-ml` could not be loaded or `nvmlInit` failed (no driver,
    /// no permission, library missing).
    #[error("cannot initialise NVML from {library}")]
    NvmlInit {
        /// The path given in the config, or the default soname that the
        /// loader searched for.
        library: String,
        source: NvmlError,
    },

    /// An NVML call failed in a way that says nothing about one GPU's health
    /// (the library itself is unusable: version mismatch, missing symbol…).
    #[error("NVML {call} failed{}", gpu_suffix(*index))]
    Nvml {
        /// The `nvml-wrapper` method (and so the C symbol) that failed.
        call: &'static str,
        /// The GPU it was called on, `None` for system-level calls.
        index: Option<u32>,
        source: NvmlError,
    },

    /// The inventory would be empty: nothing for the daemon to offer.
    #[error("the {backend} GPU inventory has no GPUs")]
    NoGpus { backend: Backend },

    /// A fault was injected for a GPU that does not exist.
    #[error("no GPU with index {index} (the inventory has {count})")]
    UnknownGpu { index: u32, count: u32 },

    /// A simulated GPU cannot use more memory than it has.
    #[error("GPU {index} has {total_mib} MiB; cannot mark {used_mib} MiB used")]
    UsedOverTotal {
        index: u32,
        used_mib: u64,
        total_mib: u64,
    },

    /// The OS refused to start the health watcher's thread.
    #[error("cannot start the GPU health watcher thread")]
    WatchThread(#[source] std::io::Error),

    /// The health watcher thread ended before it reported whether it could
    /// register for events (it panicked).
    #[error("the GPU health watcher thread ended during setup")]
    WatchSetup,
}

fn gpu_suffix(index: Option<u32>) -> String {
    index.map(|i| format!(" on GPU {i}")).unwrap_or_default()
}

/// Renders an error and its sources as `outer: inner: innermost`.
///
/// A source whose text the message already ends with is skipped:
/// `NvmlError::LibloadingError` both prints and exposes the `libloading`
/// error, which would otherwise appear twice.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_prints_each_cause_once() {
        let err = Error::Nvml {
            call: "device_count",
            index: None,
            source: NvmlError::DriverNotLoaded,
        };
        assert_eq!(
            chain(&err),
            "NVML device_count failed: NVIDIA driver is not loaded"
        );
    }

    #[test]
    fn nvml_errors_name_the_gpu_when_there_is_one() {
        let err = Error::Nvml {
            call: "memory_info",
            index: Some(3),
            source: NvmlError::Unknown,
        };
        assert_eq!(err.to_string(), "NVML memory_info failed on GPU 3");
    }
}
