//! Per-object events (what `describe` shows), kept next to the object and bounded.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::keys::object_key;
use super::{dberr, not_found, now_rfc3339, Store, StoreError, EVENTS, OBJECTS};

/// How many distinct events one object keeps; the oldest go first.
pub const MAX_EVENTS_PER_OBJECT: usize = 50;
/// Longer messages are cut to this many characters (Kubernetes caps an event note at 1 KiB).
const MAX_MESSAGE_CHARS: usize = 1024;
const MAX_REASON_CHARS: usize = 128;

/// An event's type, as Kubernetes names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

impl EventType {
    /// `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One recorded event. Identical repeats (same type, reason and message) bump `count` and
/// `last_timestamp` instead of adding an entry, as Kubernetes' event aggregation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// A short CamelCase reason, e.g. `ModelLoaded`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
    /// How many times it happened.
    pub count: u32,
    /// When it first happened (RFC 3339).
    pub first_timestamp: String,
    /// When it last happened (RFC 3339).
    pub last_timestamp: String,
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Store {
    /// Records an event about an existing object (else `NotFound`), durably.
    pub fn record_event(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let key = object_key(resource, namespace, name);
        let reason = truncate(reason, MAX_REASON_CHARS);
        let message = truncate(message, MAX_MESSAGE_CHARS);
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.begin_durable()?;
        {
            if txn.open_table(OBJECTS).map_err(dberr)?.get(key.as_str()).map_err(dberr)?.is_none() {
                return Err(not_found(resource, namespace, name));
            }
            let mut table = txn.open_table(EVENTS).map_err(dberr)?;
            let mut events: Vec<Event> = match table.get(key.as_str()).map_err(dberr)? {
                Some(b) => serde_json::from_slice(b.value())?,
                None => Vec::new(),
            };
            let now = now_rfc3339();
            match events.iter().position(|e| e.type_ == type_ && e.reason == reason && e.message == message) {
                Some(i) => {
                    // Move the repeat to the end so the list stays in last-seen order and the
                    // bound drops the stalest.
                    let mut e = events.remove(i);
                    e.count = e.count.saturating_add(1);
                    e.last_timestamp = now;
                    events.push(e);
                }
                None => events.push(Event { type_, reason, message, count: 1, first_timestamp: now.clone(), last_timestamp: now }),
            }
            if events.len() > MAX_EVENTS_PER_OBJECT {
                events.drain(..events.len() - MAX_EVENTS_PER_OBJECT);
            }
            table.insert(key.as_str(), serde_json::to_vec(&events)?.as_slice()).map_err(dberr)?;
        }
        txn.commit().map_err(dberr)?;
        Ok(())
    }

    /// The object's events, oldest (by last occurrence) first; empty if none or no such object.
    pub fn events(&self, resource: &str, namespace: &str, name: &str) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let table = txn.open_table(EVENTS).map_err(dberr)?;
        match table.get(object_key(resource, namespace, name).as_str()).map_err(dberr)? {
            Some(b) => Ok(serde_json::from_slice(b.value())?),
            None => Ok(Vec::new()),
        }
    }
}
