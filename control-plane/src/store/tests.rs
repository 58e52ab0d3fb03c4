use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use super::*;

const R: &str = "inferenceservices.serving.kserve.io";

fn isvc(name: &str, uri: &str) -> Value {
    json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": uri}}}})
}

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("quiver-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn temp_store() -> (TempDir, Store) {
    let dir = temp_dir();
    let store = Store::open(dir.0.join("store.redb")).unwrap();
    (dir, store)
}

#[test]
fn create_fills_metadata_and_refuses_duplicates() {
    let (_dir, store) = temp_store();
    let obj = store.create(R, isvc("a", "/m1")).unwrap();
    let meta = &obj["metadata"];
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["resourceVersion"], "1");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(humantime::parse_rfc3339(meta["creationTimestamp"].as_str().unwrap()).is_ok());
    assert!(matches!(store.create(R, isvc("a", "/m1")), Err(StoreError::AlreadyExists { .. })));
    assert!(matches!(store.create(R, json!({"metadata": {}})), Err(StoreError::Invalid { .. })));
    assert!(matches!(store.get(R, "default", "nope"), Err(StoreError::NotFound { .. })));
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let (dir, store) = temp_store();
    store.create(R, isvc("a", "/m1")).unwrap();
    store.create(R, isvc("b", "/m2")).unwrap();
    store.update_status(R, "default", "a", json!({"url": "http://a"}), None).unwrap();
    store.record_event(R, "default", "a", EventType::Normal, "Created", "made").unwrap();
    drop(store);
    let store = Store::open(dir.0.join("store.redb")).unwrap();
    let listed = store.list(R, Some("default")).unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_eq!(listed.resource_version, "3");
    assert_eq!(store.get(R, "default", "a").unwrap()["status"]["url"], "http://a");
    assert_eq!(store.events(R, "default", "a").unwrap().len(), 1);
    // The counter carries on from where it was.
    assert_eq!(store.create(R, isvc("c", "/m3")).unwrap()["metadata"]["resourceVersion"], "4");
}

#[test]
fn replace_conflicts_on_stale_version_and_bumps_generation_on_spec_change_only() {
    let (_dir, store) = temp_store();
    let created = store.create(R, isvc("a", "/m1")).unwrap();
    store.update_status(R, "default", "a", json!({"url": "http://a"}), Some("1")).unwrap();
    let mut stale = created.clone();
    stale["spec"]["predictor"]["model"]["storageUri"] = json!("/m2");
    assert!(matches!(store.replace(R, stale.clone()), Err(StoreError::Conflict { .. })));
    stale["metadata"]["resourceVersion"] = json!("2");
    stale["status"] = json!({"url": "ignored"});
    stale["metadata"]["uid"] = json!("forged");
    let replaced = store.replace(R, stale).unwrap();
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["metadata"]["resourceVersion"], "3");
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(replaced["status"]["url"], "http://a");
    // A label change is a new resourceVersion but the same generation.
    let mut labelled = replaced.clone();
    labelled["metadata"]["labels"] = json!({"team": "x"});
    let labelled = store.replace(R, labelled).unwrap();
    assert_eq!(labelled["metadata"]["generation"], 2);
    assert_eq!(labelled["metadata"]["resourceVersion"], "4");
    // No change: nothing commits.
    assert_eq!(store.replace(R, labelled.clone()).unwrap()["metadata"]["resourceVersion"], "4");
    // Status updates never bump generation and check the version when given.
    assert!(matches!(store.update_status(R, "default", "a", json!({}), Some("1")), Err(StoreError::Conflict { .. })));
    assert_eq!(store.update_status(R, "default", "a", json!({}), Some("4")).unwrap()["metadata"]["generation"], 2);
}

#[test]
fn list_by_namespace_and_delete() {
    let (_dir, store) = temp_store();
    store.create(R, isvc("a", "/m")).unwrap();
    let mut other = isvc("b", "/m");
    other["metadata"]["namespace"] = json!("team");
    store.create(R, other).unwrap();
    store.create("other.example.io", isvc("z", "/m")).unwrap();
    assert_eq!(store.list(R, None).unwrap().items.len(), 2);
    assert_eq!(store.list(R, Some("team")).unwrap().items[0]["metadata"]["name"], "b");
    assert_eq!(store.list(R, Some("nope")).unwrap().items.len(), 0);
    let deleted = store.delete(R, "team", "b").unwrap();
    assert_eq!(deleted["metadata"]["name"], "b");
    assert!(matches!(store.delete(R, "team", "b"), Err(StoreError::NotFound { .. })));
    assert_eq!(store.list(R, None).unwrap().items.len(), 1);
}

#[test]
fn watchers_see_changes_in_order() {
    let (_dir, store) = temp_store();
    let mut rx = store.subscribe();
    store.create(R, isvc("a", "/m")).unwrap();
    store.update_status(R, "default", "a", json!({"x": 1}), None).unwrap();
    store.delete(R, "default", "a").unwrap();
    let kinds: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap()).map(|c| (c.kind, c.resource_version)).collect();
    assert_eq!(
        kinds,
        vec![(ChangeKind::Added, "1".to_string()), (ChangeKind::Modified, "2".to_string()), (ChangeKind::Deleted, "3".to_string())]
    );
}

#[test]
fn events_aggregate_and_stay_bounded() {
    let (_dir, store) = temp_store();
    assert!(matches!(store.record_event(R, "default", "a", EventType::Normal, "X", "y"), Err(StoreError::NotFound { .. })));
    store.create(R, isvc("a", "/m")).unwrap();
    for _ in 0..3 {
        store.record_event(R, "default", "a", EventType::Warning, "LoadFailed", "boom").unwrap();
    }
    for i in 0..60 {
        store.record_event(R, "default", "a", EventType::Normal, "Scaled", &format!("to {i}")).unwrap();
    }
    let events = store.events(R, "default", "a").unwrap();
    assert_eq!(events.len(), MAX_EVENTS_PER_OBJECT);
    assert_eq!(events.last().unwrap().message, "to 59");
    store.record_event(R, "default", "a", EventType::Normal, "Scaled", "to 59").unwrap();
    let events = store.events(R, "default", "a").unwrap();
    assert_eq!(events.last().unwrap().count, 2);
    assert_eq!(events.len(), MAX_EVENTS_PER_OBJECT);
}

const CRASH_DIR_ENV: &str = "QUIVER_STORE_CRASH_CHILD_DIR";

/// The child half of `acknowledged_writes_survive_sigkill`: writes until killed, printing each
/// name only after its commit returned. Does nothing when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else { return };
    let store = Store::open(std::path::Path::new(&dir).join("store.redb")).unwrap();
    for i in 0.. {
        store.create(R, isvc(&format!("obj-{i}"), "/m")).unwrap();
        println!("ACK obj-{i}");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = temp_dir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store::tests::crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_ENV, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 40 {
        let line = lines.next().expect("child ended before 40 writes").unwrap();
        if let Some(name) = line.strip_prefix("ACK ") {
            acked.push(name.to_string());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flush.
    child.wait().unwrap();
    // Acks the child printed after we stopped reading also count.
    for line in lines.map_while(Result::ok) {
        if let Some(name) = line.strip_prefix("ACK ") {
            acked.push(name.to_string());
        }
    }
    let store = Store::open(dir.0.join("store.redb")).unwrap();
    for name in &acked {
        store.get(R, "default", name).unwrap_or_else(|e| panic!("acknowledged {name} lost: {e}"));
    }
    assert!(store.list(R, None).unwrap().items.len() >= acked.len());
}
