//! Admission of InferenceServices in embedded mode: the manifest must parse and validate (the
//! field is named), a local storageUri must be readable now, and a name may serve one namespace
//! at a time (models answer at `/v2/models/{name}`). Unknown fields pass with a warning.

use std::sync::Arc;

use serde_json::Value;

use super::ISVC_RESOURCE;
use crate::{
    api::{Causes, ResourceKind},
    resources::{validate::validate, InferenceService},
    storage::{
        self,
        uri::{Source, StorageUri},
    },
    store::Store,
};

/// The InferenceService kind of the management API.
pub struct InferenceServiceKind {
    store: Arc<Store>,
}

impl InferenceServiceKind {
    /// The kind, checking names against the services in `store`.
    pub fn new(store: Arc<Store>) -> InferenceServiceKind {
        InferenceServiceKind { store }
    }
}

impl ResourceKind for InferenceServiceKind {
    fn group(&self) -> &str {
        "serving.kserve.io"
    }

    fn version(&self) -> &str {
        "v1beta1"
    }

    fn plural(&self) -> &str {
        "inferenceservices"
    }

    fn kind(&self) -> &str {
        "InferenceService"
    }

    fn namespaced(&self) -> bool {
        true
    }

    fn short_names(&self) -> Vec<String> {
        vec!["isvc".into()]
    }

    fn admit(&self, obj: &Value) -> Result<Vec<String>, Causes> {
        let (isvc, mut warnings) = InferenceService::from_value(obj).map_err(|e| vec![(e.field.clone(), e.message.clone())])?;
        let validated = validate(&isvc).map_err(|e| e.causes.into_iter().map(|c| (c.field, c.message)).collect::<Causes>())?;
        warnings.extend(validated.warnings);
        let mut causes = Causes::new();
        let uri = &validated.predictor.storage_uri;
        if let Ok(StorageUri { source: Source::Local(path), .. }) = storage::uri::parse(uri) {
            if std::fs::metadata(&path).is_err() {
                causes.push((storage_field(obj), format!("{uri} does not exist or cannot be read by the server")));
            }
        }
        let meta = |f: &str| obj.get("metadata").and_then(|m| m.get(f)).and_then(Value::as_str).unwrap_or_default().to_string();
        let (namespace, name) = (meta("namespace"), meta("name"));
        if let Ok(listed) = self.store.list(ISVC_RESOURCE, None) {
            let taken = listed.items.iter().find_map(|o| {
                let m = o.get("metadata")?;
                let other_ns = m.get("namespace")?.as_str()?;
                (m.get("name")?.as_str()? == name && other_ns != namespace).then(|| other_ns.to_string())
            });
            if let Some(other) = taken {
                causes.push((
                    "metadata.name".into(),
                    format!("'{name}' already names an InferenceService in namespace '{other}' (models are named after their service, one namespace per name)"),
                ));
            }
        }
        if causes.is_empty() {
            Ok(warnings)
        } else {
            Err(causes)
        }
    }
}

/// The storageUri's field path in this manifest (the model spec or a format shorthand).
fn storage_field(obj: &Value) -> String {
    let predictor = obj.get("spec").and_then(|s| s.get("predictor"));
    if predictor.and_then(|p| p.get("model")).is_some() {
        return "spec.predictor.model.storageUri".into();
    }
    let shorthand =
        predictor.and_then(Value::as_object).and_then(|p| p.iter().find(|(_, v)| v.get("storageUri").is_some()).map(|(k, _)| k.clone()));
    format!("spec.predictor.{}.storageUri", shorthand.unwrap_or_else(|| "model".into()))
}
