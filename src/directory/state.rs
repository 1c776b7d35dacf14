//! The gateway's own durable state about identities: values some backends cannot store, such as
//! `externalId` (Dolibarr 22 drops `ref_ext`) and a `displayName` that differs from the name. Kept in
//! an embedded crash-safe database file (redb), keyed by namespace and backend id, and mirrored in
//! memory for reads, with a reverse index for lookups by value.
//!
//! Each value is bound to a fingerprint of the entity it was set for (its creation time), so an
//! entity that gets a deleted one's id (backends reuse ids) never inherits its state; the directory
//! also forgets an entity's state whenever it is deleted, whatever the path.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::RwLock;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const EXTERNAL_IDS: TableDefinition<&str, &str> = TableDefinition::new("external_ids");

#[derive(Debug, thiserror::Error)]
#[error("gateway state store: {0}")]
pub struct StateError(String);

fn err(e: impl std::fmt::Display) -> StateError {
    StateError(e.to_string())
}

#[derive(Default)]
struct Maps {
    /// `ns/id` → (fingerprint, value).
    by_key: HashMap<String, (String, String)>,
    /// `ns` + NUL + value → ids.
    by_value: HashMap<String, BTreeSet<String>>,
}

impl Maps {
    fn insert(&mut self, k: String, fp: String, v: String) {
        self.remove(&k);
        if let Some((ns, id)) = k.split_once('/') {
            self.by_value.entry(format!("{ns}\u{0}{v}")).or_default().insert(id.to_string());
        }
        self.by_key.insert(k, (fp, v));
    }
    fn remove(&mut self, k: &str) {
        if let Some((_, v)) = self.by_key.remove(k)
            && let Some((ns, id)) = k.split_once('/')
        {
            let rk = format!("{ns}\u{0}{v}");
            if let Some(ids) = self.by_value.get_mut(&rk) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_value.remove(&rk);
                }
            }
        }
    }
}

pub struct StateStore {
    db: Option<redb::Database>,
    map: RwLock<Maps>,
}

fn key(ns: &str, id: &str) -> String {
    format!("{ns}/{id}")
}

/// Stored as `fingerprint US value`; rows from before fingerprints have none and match any entity.
const SEP: char = '\u{1f}';

fn decode(stored: &str) -> (String, String) {
    match stored.split_once(SEP) {
        Some((fp, v)) => (fp.to_string(), v.to_string()),
        None => (String::new(), stored.to_string()),
    }
}

impl StateStore {
    /// Opens (or creates) the store file; `None` keeps everything in memory only.
    pub fn open(path: Option<&Path>) -> Result<StateStore, StateError> {
        let Some(path) = path else { return Ok(StateStore::memory()) };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::create(path).map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let mut map = Maps::default();
        {
            let w = db.begin_write().map_err(err)?;
            w.open_table(EXTERNAL_IDS).map_err(err)?;
            w.commit().map_err(err)?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(EXTERNAL_IDS).map_err(err)?;
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let (fp, v) = decode(v.value());
                map.insert(k.value().to_string(), fp, v);
            }
        }
        Ok(StateStore { db: Some(db), map: RwLock::new(map) })
    }

    /// A store that forgets everything when the process ends.
    pub fn memory() -> StateStore {
        StateStore { db: None, map: Default::default() }
    }

    fn maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for an entity, unless it was set for another entity that had the same id.
    pub fn get(&self, ns: &str, id: &str, fingerprint: &str) -> Option<String> {
        let maps = self.maps();
        let (fp, v) = maps.by_key.get(&key(ns, id))?;
        (fp.is_empty() || fp == fingerprint).then(|| v.clone())
    }

    /// Ids in namespace `ns` with this value (case-exact), with the fingerprint each was set for.
    pub fn ids_with(&self, ns: &str, value: &str) -> Vec<(String, String)> {
        let maps = self.maps();
        let Some(ids) = maps.by_value.get(&format!("{ns}\u{0}{value}")) else { return Vec::new() };
        ids.iter().filter_map(|id| maps.by_key.get(&key(ns, id)).map(|(fp, _)| (id.clone(), fp.clone()))).collect()
    }

    /// Sets (`Some`) or removes (`None`) an entity's value, durably before returning.
    pub fn set(&self, ns: &str, id: &str, fingerprint: &str, value: Option<&str>) -> Result<(), StateError> {
        let k = key(ns, id);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let current = map.by_key.get(&k);
        let unchanged = match (current, value) {
            (None, None) => true,
            (Some((fp, v)), Some(new)) => fp == fingerprint && v == new,
            _ => false,
        };
        if unchanged {
            return Ok(());
        }
        if let Some(db) = &self.db {
            let w = db.begin_write().map_err(err)?;
            {
                let mut t = w.open_table(EXTERNAL_IDS).map_err(err)?;
                match value {
                    Some(v) => {
                        t.insert(k.as_str(), format!("{fingerprint}{SEP}{v}").as_str()).map_err(err)?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(err)?;
                    }
                }
            }
            w.commit().map_err(err)?;
        }
        match value {
            Some(v) => map.insert(k, fingerprint.to_string(), v.to_string()),
            None => map.remove(&k),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.redb");
        {
            let s = StateStore::open(Some(&p)).unwrap();
            s.set("user", "1", "100", Some("ext-a")).unwrap();
            s.set("group", "1", "", Some("ext-g")).unwrap();
            s.set("user", "2", "100", Some("gone")).unwrap();
            s.set("user", "2", "100", None).unwrap();
        }
        let s = StateStore::open(Some(&p)).unwrap();
        assert_eq!(s.get("user", "1", "100").as_deref(), Some("ext-a"));
        assert_eq!(s.get("user", "1", "200"), None, "another entity with the same id");
        assert_eq!(s.get("group", "1", "any").as_deref(), Some("ext-g"));
        assert_eq!(s.get("user", "2", "100"), None);
        assert_eq!(s.ids_with("user", "ext-a"), vec![("1".to_string(), "100".to_string())]);
        assert!(s.ids_with("user", "EXT-A").is_empty());
        assert!(s.ids_with("user", "gone").is_empty());
    }
}
