//! The gateway's own durable state for SCIM: values some backends cannot store, such as `externalId`
//! (Dolibarr 22 drops `ref_ext`) and a `displayName` that differs from the name. Kept in an embedded crash-safe database file (redb), keyed by
//! resource kind and backend id, and mirrored in memory for reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const EXTERNAL_IDS: TableDefinition<&str, &str> = TableDefinition::new("external_ids");

#[derive(Debug, thiserror::Error)]
#[error("SCIM state store: {0}")]
pub struct StateError(String);

fn err(e: impl std::fmt::Display) -> StateError {
    StateError(e.to_string())
}

pub struct StateStore {
    db: Option<redb::Database>,
    /// `kind/id` → externalId.
    map: RwLock<HashMap<String, String>>,
}

fn key(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

impl StateStore {
    /// Opens (or creates) the store file; `None` keeps everything in memory only.
    pub fn open(path: Option<&Path>) -> Result<StateStore, StateError> {
        let Some(path) = path else { return Ok(StateStore { db: None, map: Default::default() }) };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::create(path).map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let mut map = HashMap::new();
        {
            let w = db.begin_write().map_err(err)?;
            w.open_table(EXTERNAL_IDS).map_err(err)?;
            w.commit().map_err(err)?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(EXTERNAL_IDS).map_err(err)?;
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                map.insert(k.value().to_string(), v.value().to_string());
            }
        }
        Ok(StateStore { db: Some(db), map: RwLock::new(map) })
    }

    pub fn get(&self, kind: &str, id: &str) -> Option<String> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(&key(kind, id)).cloned()
    }

    /// Ids of the resources in namespace `kind` with this value (case-exact).
    pub fn ids_with(&self, kind: &str, external_id: &str) -> Vec<String> {
        let prefix = format!("{kind}/");
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, v)| v.as_str() == external_id && k.starts_with(&prefix))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) a resource's externalId, durably before returning.
    pub fn set(&self, kind: &str, id: &str, value: Option<&str>) -> Result<(), StateError> {
        let k = key(kind, id);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.get(&k).map(String::as_str) == value {
            return Ok(());
        }
        if let Some(db) = &self.db {
            let w = db.begin_write().map_err(err)?;
            {
                let mut t = w.open_table(EXTERNAL_IDS).map_err(err)?;
                match value {
                    Some(v) => {
                        t.insert(k.as_str(), v).map_err(err)?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(err)?;
                    }
                }
            }
            w.commit().map_err(err)?;
        }
        match value {
            Some(v) => map.insert(k, v.to_string()),
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
            s.set("user", "1", Some("ext-a")).unwrap();
            s.set("group", "1", Some("ext-g")).unwrap();
            s.set("user", "2", Some("gone")).unwrap();
            s.set("user", "2", None).unwrap();
        }
        let s = StateStore::open(Some(&p)).unwrap();
        assert_eq!(s.get("user", "1").as_deref(), Some("ext-a"));
        assert_eq!(s.get("group", "1").as_deref(), Some("ext-g"));
        assert_eq!(s.get("user", "2"), None);
        assert_eq!(s.ids_with("user", "ext-a"), vec!["1".to_string()]);
        assert!(s.ids_with("user", "EXT-A").is_empty());
    }
}
