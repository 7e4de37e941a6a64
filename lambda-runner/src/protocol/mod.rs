//! Client-protocol v4 (work in progress).
