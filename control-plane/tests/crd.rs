//! The CRD in deploy/crds/ is the one the Rust types generate.

use quiver_control_plane::resources::crd::crd_yaml;

const CRD_PATH: &str = "deploy/crds/serving.kserve.io_inferenceservices.yaml";

#[test]
fn deployed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(CRD_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = crd_yaml().unwrap();
    assert!(
        on_disk == generated,
        "{CRD_PATH} is out of date with the InferenceService types; regenerate it with `cargo run -- crd > {CRD_PATH}`"
    );
}

#[test]
fn crd_shape() {
    let crd: serde_json::Value = serde_yaml_ng::from_str(&crd_yaml().unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], "inferenceservices.serving.kserve.io");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "isvc");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1beta1");
    let columns: Vec<_> = version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"]);
    assert!(version["subresources"]["status"].is_object());
    let predictor = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictor"];
    assert_eq!(predictor["x-kubernetes-preserve-unknown-fields"], true, "{predictor}");
    assert_eq!(predictor["properties"]["model"]["x-kubernetes-preserve-unknown-fields"], true);
}
