//! The resource types: KServe's InferenceService (serving.kserve.io/v1beta1), how manifests are
//! parsed and checked, and the normalized predictor the reconcile core works from.

pub mod crd;
pub mod inference_service;
pub mod parse;
pub mod predictor;
pub mod validate;

pub use inference_service::{InferenceService, InferenceServiceSpec, InferenceServiceStatus};
