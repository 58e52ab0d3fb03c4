//! What the embedded driver keeps between reconciles and across restarts, per InferenceService:
//! its revisions as observed, the rollout history, and the runtime configuration its model was
//! loaded with. Kept in the store (same crash safety as the resources) under an internal
//! resource that the management API does not serve.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::isvc::reconcile::Observed;

/// The store resource of the driver's records.
pub(crate) const STATE_RESOURCE: &str = "revisionstates.embedded.quiver.dev";

/// One InferenceService's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceState {
    /// The revisions and rollout history.
    pub observed: Observed,
    /// The model configuration last loaded (Triton's JSON form), reused for reloads.
    pub config: Option<Value>,
}

impl ServiceState {
    /// The record as a store object.
    pub(crate) fn to_object(&self, namespace: &str, name: &str) -> Value {
        json!({
            "apiVersion": "embedded.quiver.dev/v1",
            "kind": "RevisionState",
            "metadata": { "namespace": namespace, "name": name },
            "spec": self,
        })
    }

    /// The record from a store object.
    pub(crate) fn from_object(object: &Value) -> Result<ServiceState, serde_json::Error> {
        serde_json::from_value(object.get("spec").cloned().unwrap_or(Value::Null))
    }
}
