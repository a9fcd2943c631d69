//! Shared accessors for tables keyed by a string and valued by a JSON record.
//!
//! Each domain module keeps its own table definition and record type; these helpers do the
//! redb plumbing (open, get, iterate, insert, remove) and the JSON encoding, naming the table
//! and key in every error.

use redb::{ReadableTable, TableDefinition, TableError, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::schema;
use crate::store::Store;

/// A table of JSON records keyed by strings, with the name used in error messages.
#[derive(Clone, Copy)]
pub(crate) struct JsonTable {
    /// The table's name (also inside `definition`, repeated for error messages).
    pub(crate) name: &'static str,
    /// The redb definition.
    pub(crate) definition: TableDefinition<'static, &'static str, &'static [u8]>,
}

impl JsonTable {
    /// Creates the table in `txn` if it does not exist yet (a write transaction creates a table
    /// when it opens it).
    pub(crate) fn create(
        self,
        path: &std::path::Path,
        txn: &WriteTransaction,
    ) -> Result<(), StoreError> {
        txn.open_table(self.definition)
            .map_err(|error| StoreError::from_redb(path, error))?;
        Ok(())
    }

    /// The record under `key`, if any.
    pub(crate) fn get<T: DeserializeOwned>(
        self,
        store: &Store,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        store.read(|txn| {
            let table = match txn.open_table(self.definition) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(store.redb_error(error)),
            };
            match table.get(key).map_err(|error| store.redb_error(error))? {
                Some(bytes) => Ok(Some(schema::decode(
                    store.path(),
                    self.name,
                    key,
                    bytes.value(),
                )?)),
                None => Ok(None),
            }
        })
    }

    /// Every record, in key order, from one consistent snapshot.
    pub(crate) fn all<T: DeserializeOwned>(
        self,
        store: &Store,
    ) -> Result<Vec<(String, T)>, StoreError> {
        store.read(|txn| {
            let table = match txn.open_table(self.definition) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(error) => return Err(store.redb_error(error)),
            };
            let mut records = Vec::new();
            for row in table.iter().map_err(|error| store.redb_error(error))? {
                let (key, value) = row.map_err(|error| store.redb_error(error))?;
                let key = key.value();
                let record = schema::decode(store.path(), self.name, key, value.value())?;
                records.push((key.to_string(), record));
            }
            Ok(records)
        })
    }

    /// Writes every `(key, record)` in one durable transaction, returning the records they
    /// replaced (in the same order).
    pub(crate) fn put_many<T: Serialize + DeserializeOwned>(
        self,
        store: &Store,
        records: &[(&str, &T)],
    ) -> Result<Vec<Option<T>>, StoreError> {
        store.write(|txn| {
            let mut table = txn
                .open_table(self.definition)
                .map_err(|error| store.redb_error(error))?;
            let mut previous = Vec::with_capacity(records.len());
            for (key, record) in records {
                let bytes = schema::encode(store.path(), self.name, key, record)?;
                let old = table
                    .insert(*key, bytes.as_slice())
                    .map_err(|error| store.redb_error(error))?;
                let old = match old {
                    // An undecodable old record is being replaced; it is not an error here.
                    Some(old) => serde_json::from_slice(old.value()).ok(),
                    None => None,
                };
                previous.push(old);
            }
            Ok(previous)
        })
    }

    /// Removes every key in one durable transaction, returning the removed records (in the same
    /// order; `None` for keys that were absent or held an undecodable record).
    pub(crate) fn remove_many<T: DeserializeOwned>(
        self,
        store: &Store,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>, StoreError> {
        store.write(|txn| {
            let mut table = txn
                .open_table(self.definition)
                .map_err(|error| store.redb_error(error))?;
            let mut removed = Vec::with_capacity(keys.len());
            for key in keys {
                let old = table
                    .remove(*key)
                    .map_err(|error| store.redb_error(error))?;
                removed.push(old.and_then(|old| serde_json::from_slice(old.value()).ok()));
            }
            Ok(removed)
        })
    }
}
