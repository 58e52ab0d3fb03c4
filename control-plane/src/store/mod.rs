//! The embedded, crash-safe object store behind the management API.
//!
//! Objects are Kubernetes-shaped JSON (`apiVersion`, `kind`, `metadata`, `spec`, `status`) keyed by
//! (resource, namespace, name), e.g. ("inferenceservices.serving.kserve.io", "default", "iris").
//! The store owns the server-managed metadata: `uid`, `creationTimestamp`, `generation` and
//! `resourceVersion` (one global counter, as in Kubernetes).
//!
//! Why redb: it is pure Rust (no C toolchain, unlike SQLite), ACID with copy-on-write pages, and a
//! commit with `Durability::Immediate` (its default) returns only after fsync. Every write here is
//! one write transaction committed that way before the caller sees `Ok`, so a `kill -9` after the
//! acknowledgement loses nothing.
//!
//! Watching: [`Store::subscribe`] hands out a bounded broadcast receiver of [`Change`]s, sent after
//! each commit in resourceVersion order. A receiver that falls more than [`WATCH_CAPACITY`] changes
//! behind gets `RecvError::Lagged`; it must then resync by calling [`Store::list`] (whose
//! `resource_version` says where the listing stands) and carry on receiving, as a Kubernetes
//! informer relists after a "410 Gone".

mod events;
mod keys;
#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

pub use events::{Event, EventType, MAX_EVENTS_PER_OBJECT};
use keys::{object_key, prefix};

/// How many changes a watcher may fall behind before it is told it lagged.
pub const WATCH_CAPACITY: usize = 1024;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RV_KEY: &str = "resourceVersion";

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under that key.
    #[error("{resource} \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound {
        /// The resource, e.g. `inferenceservices.serving.kserve.io`.
        resource: String,
        /// The namespace ("" for cluster-scoped objects).
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// `create` of a key that is taken.
    #[error("{resource} \"{name}\" already exists in namespace \"{namespace}\"")]
    AlreadyExists {
        /// The resource.
        resource: String,
        /// The namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// The caller's `metadata.resourceVersion` is not the stored one.
    #[error("the object has been modified; please apply your changes to the latest version and try again (stored resourceVersion {current}, given {given})")]
    Conflict {
        /// The stored resourceVersion.
        current: String,
        /// The resourceVersion the caller sent.
        given: String,
    },
    /// The object is not one the store can key (no name, not an object, ...).
    #[error("invalid object: {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `metadata.name`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database failed (I/O, corruption).
    #[error("store database error: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not decode.
    #[error("stored record is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The blocking task running an operation did not finish (it panicked, or the runtime is
    /// shutting down).
    #[error("store task failed: {0}")]
    Task(String),
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Replaced, patched or its status updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One committed change, as sent to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The resource, e.g. `inferenceservices.serving.kserve.io`.
    pub resource: String,
    /// The namespace ("" for cluster-scoped objects).
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The resourceVersion the change committed at.
    pub resource_version: String,
}

/// A consistent listing: the objects and the resourceVersion they were read at.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The objects, ordered by namespace then name.
    pub items: Vec<Value>,
    /// The global resourceVersion of the snapshot the listing was read from.
    pub resource_version: String,
}

/// The embedded store. Cheap to share behind an `Arc`; all methods block on disk I/O (call them
/// from `spawn_blocking` in async code).
pub struct Store {
    db: Database,
    /// Serialises commit + broadcast so watchers see changes in resourceVersion order.
    write_lock: Mutex<()>,
    changes: broadcast::Sender<Change>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// RFC 3339 UTC, to the second, as Kubernetes writes timestamps.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// The (namespace, name) an object is stored under.
fn identity(obj: &Value) -> Result<(String, String), StoreError> {
    if !obj.is_object() {
        return Err(StoreError::Invalid { field: "(root)".into(), message: "must be a JSON object".into() });
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        return Err(StoreError::Invalid { field: "metadata".into(), message: "required object".into() });
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    let namespace = meta_str(obj, "namespace").unwrap_or_default();
    keys::check("metadata.name", name, false)?;
    keys::check("metadata.namespace", namespace, true)?;
    Ok((namespace.to_string(), name.to_string()))
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| StoreError::Invalid { field: "metadata".into(), message: "required object".into() })
}

impl Store {
    /// Runs `f` on tokio's blocking pool: redb's reads and durable commits block their thread,
    /// which must not be one of the async workers.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Opens (creating if missing) the store file at `path`. After a crash, redb recovers to the
    /// last committed transaction here.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(dberr)?;
        let txn = db.begin_write().map_err(dberr)?;
        {
            txn.open_table(OBJECTS).map_err(dberr)?;
            txn.open_table(EVENTS).map_err(dberr)?;
            txn.open_table(META).map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        let (changes, _) = broadcast::channel(WATCH_CAPACITY);
        Ok(Store { db, write_lock: Mutex::new(()), changes })
    }

    /// A write transaction whose commit returns only once the data is on disk. Immediate is
    /// redb's default; it is set anyway because acknowledging a write relies on it.
    fn begin_durable(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(dberr)?;
        txn.set_durability(redb::Durability::Immediate).map_err(dberr)?;
        Ok(txn)
    }

    /// A receiver of every change committed from now on. Bounded: see the module docs for what a
    /// lagged receiver must do.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> Result<String, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let meta = txn.open_table(META).map_err(dberr)?;
        Ok(meta.get(RV_KEY).map_err(dberr)?.map(|v| v.value()).unwrap_or(0).to_string())
    }

    /// The object stored under the key.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(OBJECTS).map_err(dberr)?;
        let key = object_key(resource, namespace, name);
        match table.get(key.as_str()).map_err(dberr)? {
            Some(bytes) => Ok(serde_json::from_slice(bytes.value())?),
            None => Err(not_found(resource, namespace, name)),
        }
    }

    /// Every object of `resource`, in one namespace or (None) in all, from one snapshot.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Result<Listed, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(OBJECTS).map_err(dberr)?;
        let meta = txn.open_table(META).map_err(dberr)?;
        let rv = meta.get(RV_KEY).map_err(dberr)?.map(|v| v.value()).unwrap_or(0);
        let start = prefix(resource, namespace);
        let mut items = Vec::new();
        for entry in table.range(start.as_str()..).map_err(dberr)? {
            let (k, v) = entry.map_err(dberr)?;
            if !k.value().starts_with(&start) {
                break;
            }
            items.push(serde_json::from_slice(v.value())?);
        }
        Ok(Listed { items, resource_version: rv.to_string() })
    }

    /// Stores a new object: fills `metadata.uid`, `creationTimestamp`, `generation` (1) and
    /// `resourceVersion`. Any `status` is stored as given (the management API drops it first).
    pub fn create(&self, resource: &str, mut obj: Value) -> Result<Value, StoreError> {
        let (namespace, name) = identity(&obj)?;
        let key = object_key(resource, &namespace, &name);
        self.write(resource, &namespace, &name, ChangeKind::Added, |objects, rv| {
            if objects.get(key.as_str()).map_err(dberr)?.is_some() {
                return Err(StoreError::AlreadyExists { resource: resource.into(), namespace: namespace.clone(), name: name.clone() });
            }
            let meta = metadata_mut(&mut obj)?;
            meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
            meta.insert("generation".into(), Value::from(1));
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            objects.insert(key.as_str(), serde_json::to_vec(&obj)?.as_slice()).map_err(dberr)?;
            Ok(Written::Changed(obj))
        })
    }

    /// Replaces an object's desired state. If `obj` carries `metadata.resourceVersion` and it is
    /// not the stored one, fails with `Conflict`. `status` and the server-managed metadata (uid,
    /// creationTimestamp, generation) are kept from the stored object; `generation` goes up by
    /// one only when `spec` changed. A replace that changes nothing commits nothing and returns
    /// the stored object with its resourceVersion unchanged (as Kubernetes does for no-op updates).
    pub fn replace(&self, resource: &str, mut obj: Value) -> Result<Value, StoreError> {
        let (namespace, name) = identity(&obj)?;
        let key = object_key(resource, &namespace, &name);
        self.write(resource, &namespace, &name, ChangeKind::Modified, |objects, rv| {
            let old: Value = match objects.get(key.as_str()).map_err(dberr)? {
                Some(b) => serde_json::from_slice(b.value())?,
                None => return Err(not_found(resource, &namespace, &name)),
            };
            check_version(&old, meta_str(&obj, "resourceVersion"))?;
            let obj_map = obj.as_object_mut().ok_or_else(|| StoreError::Invalid { field: "(root)".into(), message: "object".into() })?;
            match old.get("status") {
                Some(s) => obj_map.insert("status".into(), s.clone()),
                None => obj_map.remove("status"),
            };
            let spec_changed = old.get("spec") != obj.get("spec");
            let meta = metadata_mut(&mut obj)?;
            for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                match old.get("metadata").and_then(|m| m.get(field)) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            if obj == old {
                return Ok(Written::Unchanged(old));
            }
            let meta = metadata_mut(&mut obj)?;
            if spec_changed {
                let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), Value::from(generation + 1));
            }
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            objects.insert(key.as_str(), serde_json::to_vec(&obj)?.as_slice()).map_err(dberr)?;
            Ok(Written::Changed(obj))
        })
    }

    /// Sets an object's `status` without touching its generation. `resource_version`, when given,
    /// must be the stored one (else `Conflict`).
    pub fn update_status(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        status: Value,
        resource_version: Option<&str>,
    ) -> Result<Value, StoreError> {
        let key = object_key(resource, namespace, name);
        self.write(resource, namespace, name, ChangeKind::Modified, |objects, rv| {
            let mut obj: Value = match objects.get(key.as_str()).map_err(dberr)? {
                Some(b) => serde_json::from_slice(b.value())?,
                None => return Err(not_found(resource, namespace, name)),
            };
            check_version(&obj, resource_version)?;
            if obj.get("status") == Some(&status) {
                return Ok(Written::Unchanged(obj));
            }
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), status);
            }
            metadata_mut(&mut obj)?.insert("resourceVersion".into(), Value::String(rv.to_string()));
            objects.insert(key.as_str(), serde_json::to_vec(&obj)?.as_slice()).map_err(dberr)?;
            Ok(Written::Changed(obj))
        })
    }

    /// Deletes an object (and its events) and returns it as it was.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let key = object_key(resource, namespace, name);
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.begin_durable()?;
        let (old, rv) = {
            let mut objects = txn.open_table(OBJECTS).map_err(dberr)?;
            let old: Value = match objects.remove(key.as_str()).map_err(dberr)? {
                Some(b) => serde_json::from_slice(b.value())?,
                None => return Err(not_found(resource, namespace, name)),
            };
            txn.open_table(EVENTS).map_err(dberr)?.remove(key.as_str()).map_err(dberr)?;
            (old, bump_version(&txn)?)
        };
        txn.commit().map_err(dberr)?;
        self.notify(resource, namespace, name, ChangeKind::Deleted, rv);
        Ok(old)
    }

    /// One write transaction: `f` gets the objects table and the next resourceVersion, and
    /// says whether it wrote (then the transaction commits durably) or found nothing to change.
    fn write<F>(&self, resource: &str, namespace: &str, name: &str, kind: ChangeKind, f: F) -> Result<Value, StoreError>
    where
        F: FnOnce(&mut redb::Table<&str, &[u8]>, u64) -> Result<Written, StoreError>,
    {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.begin_durable()?;
        let rv = next_version(&txn)?;
        let written = {
            let mut objects = txn.open_table(OBJECTS).map_err(dberr)?;
            f(&mut objects, rv)?
        };
        let obj = match written {
            Written::Changed(obj) => obj,
            Written::Unchanged(obj) => {
                txn.abort().map_err(dberr)?;
                return Ok(obj);
            }
        };
        txn.open_table(META).map_err(dberr)?.insert(RV_KEY, rv).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        self.notify(resource, namespace, name, kind, rv);
        Ok(obj)
    }

    fn notify(&self, resource: &str, namespace: &str, name: &str, kind: ChangeKind, rv: u64) {
        // No receivers is not an error: nobody watches yet.
        let _ = self.changes.send(Change {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            kind,
            resource_version: rv.to_string(),
        });
    }
}

/// What a write closure did.
enum Written {
    /// Wrote this object: commit.
    Changed(Value),
    /// Nothing to change; this is the stored object: abort.
    Unchanged(Value),
}

fn not_found(resource: &str, namespace: &str, name: &str) -> StoreError {
    StoreError::NotFound { resource: resource.into(), namespace: namespace.into(), name: name.into() }
}

fn check_version(stored: &Value, given: Option<&str>) -> Result<(), StoreError> {
    let current = meta_str(stored, "resourceVersion").unwrap_or_default();
    match given {
        Some(given) if !given.is_empty() && given != current => Err(StoreError::Conflict { current: current.into(), given: given.into() }),
        _ => Ok(()),
    }
}

fn next_version(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(META).map_err(dberr)?;
    let current = meta.get(RV_KEY).map_err(dberr)?.map(|v| v.value()).unwrap_or(0);
    Ok(current + 1)
}

fn bump_version(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let rv = next_version(txn)?;
    txn.open_table(META).map_err(dberr)?.insert(RV_KEY, rv).map_err(dberr)?;
    Ok(rv)
}
