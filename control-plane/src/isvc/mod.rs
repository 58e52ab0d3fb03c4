//! InferenceService: the pure reconcile core ([`reconcile`]) that both drivers share, and the
//! status it reports in KServe's shape ([`status`]).
//!
//! The core sees an InferenceService as its validated predictor (a
//! [`crate::resources::predictor::PredictorSpec`]) and what the driver observed of its
//! revisions; it answers with the actions that move the world toward the spec and the status
//! to report. It reads no clock, disk or network: time is a value, so every rule is a table test.

pub mod reconcile;
pub mod status;
