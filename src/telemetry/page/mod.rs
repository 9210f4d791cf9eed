//! The status page at `/` on the HTTP port: GPUs with their pool bars,
//! resident models (warm, loading, pinned), the queue, leases by pod and
//! recent events.
//!
//! Rendered on the server from a [`PageView`] ([`html::page`]), so it works
//! with JavaScript off; with it on, `/events` pushes the re-rendered live
//! part ([`html::live`]) as the state changes. Everything is in the binary:
//! no external fonts, scripts or styles. `/status.json` serves the same
//! view to scripts.

pub mod html;
pub mod view;

pub use view::PageView;
