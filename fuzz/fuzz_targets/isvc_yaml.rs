//! An InferenceService manifest (YAML or JSON, one or more documents), as `quiver apply` and
//! the management API take it: split into documents, each read as an InferenceService and
//! validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_control_plane::resources::{parse::parse_documents, validate::validate, InferenceService};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(documents) = parse_documents(text) else { return };
    for document in &documents {
        if let Ok((isvc, _warnings)) = InferenceService::from_value(document) {
            let _ = validate(&isvc);
        }
    }
});
