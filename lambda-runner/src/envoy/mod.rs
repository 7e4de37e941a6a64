//! The envoy client (work in progress).
