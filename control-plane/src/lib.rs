//! The control plane: InferenceService (and later training jobs, tuning experiments and
//! pipelines), reconciled by pure functions and applied by an embedded or a Kubernetes driver.
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod embedded;
pub mod isvc;
pub mod resources;
pub mod storage;
pub mod store;
