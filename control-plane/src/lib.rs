//! The control plane: InferenceService, training jobs, tuning experiments and pipelines,
//! reconciled by pure functions and applied by an embedded or a Kubernetes driver.
//!
//! The reconcilers land with their own issue; this crate is part of the workspace now so the
//! dependency graph of the design is fixed early.
