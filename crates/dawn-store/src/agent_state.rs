//! Agent state: a namespaced, transactional key-value store per agent.
//!
//! Agents keep whatever they must remember between runs here instead of inventing files, so
//! their state is covered by the node's crash safety and by its backups. One table,
//! `agent_state`, holds every agent's entries under the key `<agent>/<key>`; an
//! [`AgentStore`] is a handle bound to one agent's namespace and never sees another's.
//!
//! Values are bytes (the JSON helpers [`AgentStore::put_json`] and [`AgentStore::get_json`]
//! cover the common case). Every write commits durably before it returns, so a write that was
//! acknowledged survives a crash or power loss. [`AgentStore::transaction`] groups reads and
//! writes into one atomic, durable commit.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = dawn_store::Store::open(dir.path().join("dawn.redb"))?;
//! let counter = store.agent_store("counter")?;
//!
//! counter.put_json("hits", &41u64)?;
//! let total = counter.transaction(|txn| -> Result<u64, dawn_store::StoreError> {
//!     let hits: u64 = txn.get_json("hits")?.unwrap_or(0);
//!     txn.put_json("hits", &(hits + 1))?;
//!     Ok(hits + 1)
//! })?;
//! assert_eq!(total, 42);
//! assert_eq!(counter.get_json::<u64>("hits")?, Some(42));
//!
//! // Another agent's namespace is separate.
//! assert_eq!(store.agent_store("other")?.get("hits")?, None);
//! # Ok(())
//! # }
//! ```

use redb::{ReadableTable, Table, TableDefinition, TableError, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::store::Store;

/// The name of the [`AGENT_STATE`] table.
pub(crate) const AGENT_STATE_TABLE: &str = "agent_state";

/// Every agent's entries: `<agent>/<key>` to the value's bytes.
pub(crate) const AGENT_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new(AGENT_STATE_TABLE);

/// The separator between an agent's namespace and a key in the table's keys. Namespaces may
/// not contain it; keys may.
const SEPARATOR: char = '/';

/// The longest namespace (agent id), in bytes.
pub const MAX_AGENT_NAMESPACE_BYTES: usize = 128;
/// The longest key, in bytes.
pub const MAX_AGENT_STATE_KEY_BYTES: usize = 1024;
/// The largest value, in bytes.
pub const MAX_AGENT_STATE_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Creates the (empty) `agent_state` table in `txn` if it does not exist.
pub(crate) fn create_table(
    path: &std::path::Path,
    txn: &WriteTransaction,
) -> Result<(), StoreError> {
    txn.open_table(AGENT_STATE)
        .map_err(|error| StoreError::from_redb(path, error))?;
    Ok(())
}

/// A handle on one agent's namespace of the agent state table.
///
/// Cheap to clone. Methods block on file I/O (each write waits for the disk to confirm the
/// commit); from async code, call them inside `tokio::task::spawn_blocking`.
#[derive(Clone, Debug)]
pub struct AgentStore {
    store: Store,
    namespace: String,
    /// `<namespace>/`: the prefix of every table key of this namespace.
    prefix: String,
}

impl Store {
    /// The state store of the agent `namespace` (normally the agent's id): 1 to
    /// [`MAX_AGENT_NAMESPACE_BYTES`] bytes without `/` or control characters.
    pub fn agent_store(&self, namespace: &str) -> Result<AgentStore, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidInput {
            path: self.path().to_path_buf(),
            detail: format!("agent state namespace {namespace:?} {reason}"),
        };
        if namespace.is_empty() {
            return Err(invalid("is empty"));
        }
        if namespace.len() > MAX_AGENT_NAMESPACE_BYTES {
            return Err(invalid(&format!(
                "is longer than {MAX_AGENT_NAMESPACE_BYTES} bytes"
            )));
        }
        if namespace.contains(SEPARATOR) || namespace.chars().any(char::is_control) {
            return Err(invalid("contains '/' or a control character"));
        }
        Ok(AgentStore {
            store: self.clone(),
            namespace: namespace.to_owned(),
            prefix: format!("{namespace}{SEPARATOR}"),
        })
    }

    /// The namespaces (agent ids) that hold at least one state entry, sorted.
    pub fn agent_state_namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(AGENT_STATE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(error) => return Err(self.redb_error(error)),
            };
            let mut namespaces: Vec<String> = Vec::new();
            for row in table.iter().map_err(|error| self.redb_error(error))? {
                let (key, _) = row.map_err(|error| self.redb_error(error))?;
                if let Some((namespace, _)) = key.value().split_once(SEPARATOR)
                    && namespaces.last().map(String::as_str) != Some(namespace)
                {
                    namespaces.push(namespace.to_owned());
                }
            }
            Ok(namespaces)
        })
    }
}

impl AgentStore {
    /// The namespace (agent id) this handle reads and writes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full_key(key)?;
        self.store.read(|txn| {
            let table = match txn.open_table(AGENT_STATE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(self.store.redb_error(error)),
            };
            let value = table
                .get(full.as_str())
                .map_err(|error| self.store.redb_error(error))?;
            Ok(value.map(|bytes| bytes.value().to_vec()))
        })
    }

    /// The value under `key` decoded from JSON, if any.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            Some(bytes) => Ok(Some(self.decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, durably. Returns once the commit is on disk.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.transaction(|txn| txn.put(key, value))
    }

    /// Stores `value` as JSON under `key`, durably.
    pub fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.transaction(|txn| txn.put_json(key, value))
    }

    /// Removes `key`, durably. Returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.transaction(|txn| txn.delete(key))
    }

    /// Every entry whose key starts with `prefix` (all entries for `""`), in key order, from
    /// one consistent snapshot.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = self.full_prefix(prefix)?;
        self.store.read(|txn| {
            let table = match txn.open_table(AGENT_STATE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(error) => return Err(self.store.redb_error(error)),
            };
            collect_prefix(&table, &self.prefix, &start).map_err(|e| self.store.redb_error(e))
        })
    }

    /// The keys starting with `prefix`, in order.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list(prefix)?.into_iter().map(|(key, _)| key).collect())
    }

    /// Removes every entry of this namespace, durably. Returns how many there were.
    pub fn clear(&self) -> Result<usize, StoreError> {
        self.transaction(|txn| {
            let keys: Vec<String> = txn.list("")?.into_iter().map(|(key, _)| key).collect();
            for key in &keys {
                txn.delete(key)?;
            }
            Ok(keys.len())
        })
    }

    /// Runs `operation` in one write transaction of this namespace and commits it durably if
    /// it returns `Ok`; on `Err` nothing it wrote is kept. Writers are serialized: the
    /// transaction sees no concurrent change between its reads and its commit.
    pub fn transaction<T, E>(
        &self,
        operation: impl FnOnce(&mut AgentTransaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let txn = self.store.begin_write()?;
        let output = {
            let table = txn
                .open_table(AGENT_STATE)
                .map_err(|error| self.store.redb_error(error))?;
            let mut agent_txn = AgentTransaction { owner: self, table };
            // On error the transaction is dropped uncommitted, which aborts it.
            operation(&mut agent_txn)?
        };
        txn.commit().map_err(|error| self.store.redb_error(error))?;
        Ok(output)
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(self.invalid(format!("agent state key of {:?} is empty", self.namespace)));
        }
        self.full_prefix(key)
    }

    fn full_prefix(&self, key: &str) -> Result<String, StoreError> {
        if key.len() > MAX_AGENT_STATE_KEY_BYTES {
            return Err(self.invalid(format!(
                "agent state key of {:?} is longer than {MAX_AGENT_STATE_KEY_BYTES} bytes",
                self.namespace
            )));
        }
        Ok(format!("{}{key}", self.prefix))
    }

    fn invalid(&self, detail: String) -> StoreError {
        StoreError::InvalidInput {
            path: self.store.path().to_path_buf(),
            detail,
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
            path: self.store.path().to_path_buf(),
            table: AGENT_STATE_TABLE,
            key: format!("{}{key}", self.prefix),
            source,
        })
    }
}

/// Collects the entries of `table` whose keys start with `start` (which begins with
/// `namespace_prefix`), with the namespace prefix cut off.
fn collect_prefix(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    namespace_prefix: &str,
    start: &str,
) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError> {
    let mut entries = Vec::new();
    for row in table.range(start..)? {
        let (key, value) = row?;
        let key = key.value();
        if !key.starts_with(start) {
            break;
        }
        let short = key.get(namespace_prefix.len()..).unwrap_or_default();
        entries.push((short.to_owned(), value.value().to_vec()));
    }
    Ok(entries)
}

/// One agent's view of an open write transaction (see [`AgentStore::transaction`]).
pub struct AgentTransaction<'a> {
    owner: &'a AgentStore,
    table: Table<'a, &'static str, &'static [u8]>,
}

impl std::fmt::Debug for AgentTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTransaction")
            .field("namespace", &self.owner.namespace)
            .finish_non_exhaustive()
    }
}

impl AgentTransaction<'_> {
    /// The value under `key`, including writes made earlier in this transaction.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.owner.full_key(key)?;
        let value = self
            .table
            .get(full.as_str())
            .map_err(|error| self.owner.store.redb_error(error))?;
        Ok(value.map(|bytes| bytes.value().to_vec()))
    }

    /// The value under `key` decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            Some(bytes) => Ok(Some(self.owner.decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` (kept if the transaction commits).
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let full = self.owner.full_key(key)?;
        if value.len() > MAX_AGENT_STATE_VALUE_BYTES {
            return Err(self.owner.invalid(format!(
                "agent state value {key:?} of {:?} is {} bytes; the limit is {MAX_AGENT_STATE_VALUE_BYTES}",
                self.owner.namespace,
                value.len()
            )));
        }
        self.table
            .insert(full.as_str(), value)
            .map_err(|error| self.owner.store.redb_error(error))?;
        Ok(())
    }

    /// Stores `value` as JSON under `key`.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Record {
            path: self.owner.store.path().to_path_buf(),
            table: AGENT_STATE_TABLE,
            key: format!("{}{key}", self.owner.prefix),
            source,
        })?;
        self.put(key, &bytes)
    }

    /// Removes `key`. Returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let full = self.owner.full_key(key)?;
        let removed = self
            .table
            .remove(full.as_str())
            .map_err(|error| self.owner.store.redb_error(error))?;
        Ok(removed.is_some())
    }

    /// Every entry whose key starts with `prefix`, as this transaction sees them.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = self.owner.full_prefix(prefix)?;
        collect_prefix(&self.table, &self.owner.prefix, &start)
            .map_err(|error| self.owner.store.redb_error(error))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("dawn.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn namespaces_are_separate_even_when_one_prefixes_another() {
        let (_dir, store) = store();
        let a = store.agent_store("a").unwrap();
        let ab = store.agent_store("ab").unwrap();
        a.put("k", b"1").unwrap();
        ab.put("k", b"2").unwrap();
        a.put("k2", b"3").unwrap();
        assert_eq!(a.get("k").unwrap().unwrap(), b"1");
        assert_eq!(ab.get("k").unwrap().unwrap(), b"2");
        assert_eq!(a.keys("").unwrap(), ["k", "k2"]);
        assert_eq!(ab.keys("").unwrap(), ["k"]);
        assert_eq!(a.keys("k2").unwrap(), ["k2"]);
        assert_eq!(store.agent_state_namespaces().unwrap(), ["a", "ab"]);
        assert_eq!(a.clear().unwrap(), 2);
        assert_eq!(ab.get("k").unwrap().unwrap(), b"2");
        assert_eq!(store.agent_state_namespaces().unwrap(), ["ab"]);
    }

    #[test]
    fn keys_may_contain_the_separator() {
        let (_dir, store) = store();
        let a = store.agent_store("a").unwrap();
        a.put("dir/file", b"x").unwrap();
        assert_eq!(
            a.list("dir/").unwrap(),
            [("dir/file".to_owned(), b"x".to_vec())]
        );
        assert!(a.delete("dir/file").unwrap());
        assert!(!a.delete("dir/file").unwrap());
    }

    #[test]
    fn failed_transaction_keeps_nothing() {
        let (_dir, store) = store();
        let a = store.agent_store("a").unwrap();
        a.put("kept", b"1").unwrap();
        let result: Result<(), StoreError> = a.transaction(|txn| {
            txn.put("dropped", b"2")?;
            txn.delete("kept")?;
            assert_eq!(txn.get("dropped")?.unwrap(), b"2");
            Err(StoreError::InvalidInput {
                path: "x".into(),
                detail: "abort on purpose".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(a.get("dropped").unwrap(), None);
        assert_eq!(a.get("kept").unwrap().unwrap(), b"1");
    }

    #[test]
    fn bad_names_and_sizes_are_refused_with_the_reason() {
        let (_dir, store) = store();
        for bad in ["", "a/b", "tab\t"] {
            let error = store.agent_store(bad).unwrap_err();
            assert!(
                matches!(error, StoreError::InvalidInput { .. }),
                "{error:?}"
            );
        }
        let a = store.agent_store("a").unwrap();
        let error = a.put("", b"x").unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        let long_key = "k".repeat(MAX_AGENT_STATE_KEY_BYTES + 1);
        assert!(a.put(&long_key, b"x").is_err());
        let big = vec![0u8; MAX_AGENT_STATE_VALUE_BYTES + 1];
        let error = a.put("big", &big).unwrap_err();
        assert!(error.to_string().contains("limit"), "{error}");
        assert_eq!(a.get("big").unwrap(), None);
    }

    #[test]
    fn json_helpers_name_the_key_on_bad_data() {
        let (_dir, store) = store();
        let a = store.agent_store("a").unwrap();
        a.put("n", b"not json").unwrap();
        let error = a.get_json::<u64>("n").unwrap_err();
        assert!(error.to_string().contains("a/n"), "{error}");
        a.put_json("n", &7u64).unwrap();
        assert_eq!(a.get_json::<u64>("n").unwrap(), Some(7));
    }

    #[test]
    fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dawn.redb");
        let store = Store::open(&path).unwrap();
        store.agent_store("a").unwrap().put("k", b"v").unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.agent_store("a").unwrap().get("k").unwrap().unwrap(),
            b"v"
        );
    }
}
