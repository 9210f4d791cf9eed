//! The kubelet device plugins: `<domain>/slot` and `<domain>/vram`.
//!
//! Each resource is its own plugin on its own socket in the kubelet
//! device-plugin directory; each serves first, then registers. Device lists
//! are pure functions of the GPUs ([`devices`]), health goes Unhealthy at
//! once and Healthy after a recovery period ([`health`]), vram is packed
//! onto one GPU ([`preferred`]), and Allocate records the allocation in the
//! engine under a fresh token and persists it ([`allocate`], [`store`]).

pub mod allocate;
pub mod devices;
pub mod health;
pub mod preferred;
pub mod store;

pub use devices::{DeviceView, Layout, Resource};
