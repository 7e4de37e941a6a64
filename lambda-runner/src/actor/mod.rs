//! The actor API and runtime (work in progress).
