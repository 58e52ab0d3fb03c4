//! Knative-KPA-style autoscaling as a pure library (time and samples in, decisions out).
//!
//! The decision logic lands with its own issue; this crate is part of the workspace now so the
//! dependency graph of the design (`runtime` <- `autoscaler` <- `control-plane`) is fixed early.
