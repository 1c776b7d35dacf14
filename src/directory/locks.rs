//! Per-object write locks: writes to one user or group (by id), and creations of one login or group
//! name, are ordered; writes to different objects run side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(super) struct Locks {
    map: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl Locks {
    /// Waits for the lock named `key` (`u:<id>`, `g:<id>`, `login:<name>`, `group:<name>`).
    pub async fn lock(&self, key: String) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            // Locks live only while someone holds or waits for them; sweep the dead ones now and then.
            if map.len() >= 1024 && map.len().is_power_of_two() {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(&key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(AsyncMutex::new(()));
                    map.insert(key, Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not() {
        let l = Locks::default();
        let a = l.lock("u:1".into()).await;
        let _b = tokio::time::timeout(std::time::Duration::from_millis(50), l.lock("u:2".into()))
            .await
            .expect("another key is free");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), l.lock("u:1".into())).await.is_err());
        drop(a);
        let _c = l.lock("u:1".into()).await;
    }
}
