//! The pure admission engine (work in progress).
