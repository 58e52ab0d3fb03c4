//! The control plane: InferenceService (and later training jobs, tuning experiments and
//! pipelines), reconciled by pure functions and applied by an embedded or a Kubernetes driver.
#![warn(missing_docs)]

#[cfg(feature = "driver")]
pub mod api;
#[cfg(feature = "driver")]
pub mod cli;
#[cfg(feature = "driver")]
pub mod embedded;
pub mod isvc;
pub mod resources;
#[cfg(feature = "driver")]
pub mod storage;
#[cfg(feature = "driver")]
pub mod store;
