//! The InferenceService CustomResourceDefinition, generated from the Rust types so the CRD in
//! `deploy/crds/` cannot drift from what the controller reads and writes.

use kube::CustomResourceExt;

use super::inference_service::InferenceService;

/// The InferenceService CRD as YAML (what `quiver crd` prints and
/// `deploy/crds/serving.kserve.io_inferenceservices.yaml` holds).
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&InferenceService::crd())
}
