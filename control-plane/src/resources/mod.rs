//! The resource types: KServe's InferenceService (serving.kserve.io/v1beta1), how manifests are
//! parsed and checked, and the normalized predictor the reconcile core works from.

pub mod predictor;
