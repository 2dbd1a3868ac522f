//! Durable storage behind a trait: what must survive a restart (the outbox, later the
//! client's key pair).
//!
//! Owns: the [`Store`] contract and two implementations: [`MemoryStore`] (tests, and apps
//! that accept losing pending sends on restart) and, natively, [`FileStore`] (one file per
//! record, written atomically). The web's IndexedDB store and app-supplied stores implement
//! the same trait. Must never interpret the bytes it keeps.

use crate::sorted::SortedMap;
use std::sync::{Mutex, PoisonError};

use crate::driver::{BoxFuture, MaybeSend};
use crate::error::{Error, Result};

/// The records of one namespace: `(key, value)` in key order.
pub type Records = Vec<(String, Vec<u8>)>;

/// A small key-value store of records grouped in namespaces. Keys and namespaces are
/// identifiers (ASCII letters, digits, `-`, `_`, `.`, `:`). `put` must be durable when it
/// returns: the outbox relies on it to promise that a send survives a restart.
pub trait Store: MaybeSend + 'static {
    /// Writes (or replaces) a record.
    fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<()>>;
    /// Removes a record; removing a missing record is not an error.
    fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, Result<()>>;
    /// Every record of a namespace, in key order.
    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Records>>;
}

/// Checks a namespace and a key against the rules above, for stores implemented elsewhere.
pub fn check_names(namespace: &str, key: &str) -> Result<()> {
    check_namespace(namespace).and_then(|()| check_name("key", key))
}

/// Checks a namespace alone (what `list` takes), for stores implemented elsewhere.
pub fn check_namespace(namespace: &str) -> Result<()> {
    check_name("namespace", namespace)
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid store {what} \"{}\"",
            name.escape_default()
        )))
    }
}

/// A store in memory: fast, and gone with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<SortedMap<(String, String), Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, SortedMap<(String, String), Vec<u8>>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        let result = check_names(namespace, key).map(|()| {
            self.records()
                .insert((namespace.to_owned(), key.to_owned()), value);
        });
        Box::pin(std::future::ready(result))
    }

    fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, Result<()>> {
        self.records()
            .remove(&(namespace.to_owned(), key.to_owned()));
        Box::pin(std::future::ready(Ok(())))
    }

    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Records>> {
        let out = self
            .records()
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }
}

#[cfg(feature = "native")]
pub use file::FileStore;

#[cfg(feature = "native")]
mod file {
    use std::path::{Path, PathBuf};

    use super::{Records, Store, check_name, check_names, check_namespace};
    use crate::driver::BoxFuture;
    use crate::error::{Error, Result};

    /// A store in a directory: one file per record, `<root>/<namespace>/<key>`, each
    /// written to a temporary file, flushed to disk and renamed into place, so a crash
    /// leaves either the old record or the new one, never half of one.
    #[derive(Debug, Clone)]
    pub struct FileStore {
        root: PathBuf,
    }

    impl FileStore {
        /// A store rooted at `root` (created if missing).
        pub fn new(root: impl Into<PathBuf>) -> Self {
            Self { root: root.into() }
        }

        fn path(&self, namespace: &str, key: &str) -> Result<(PathBuf, PathBuf)> {
            check_names(namespace, key)?;
            let dir = self.root.join(namespace);
            Ok((dir.join(key), dir))
        }
    }

    fn io(e: std::io::Error) -> Error {
        Error::Internal(format!("store: {e}"))
    }

    async fn sync_dir(dir: &Path) -> Result<()> {
        // Makes the rename itself durable.
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| Error::Internal(format!("store: {e}")))?
            .map_err(io)
    }

    impl Store for FileStore {
        fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
            let paths = self.path(namespace, key);
            let tmp_name = format!(".{key}.tmp");
            Box::pin(async move {
                let (path, dir) = paths?;
                tokio::fs::create_dir_all(&dir).await.map_err(io)?;
                let tmp = dir.join(tmp_name);
                let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
                let mut file = file;
                tokio::io::AsyncWriteExt::write_all(&mut file, &value)
                    .await
                    .map_err(io)?;
                file.sync_all().await.map_err(io)?;
                drop(file);
                tokio::fs::rename(&tmp, &path).await.map_err(io)?;
                sync_dir(&dir).await
            })
        }

        fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, Result<()>> {
            let paths = self.path(namespace, key);
            Box::pin(async move {
                let (path, dir) = paths?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => sync_dir(&dir).await,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io(e)),
                }
            })
        }

        fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Records>> {
            let dir = check_namespace(namespace).map(|()| self.root.join(namespace));
            Box::pin(async move {
                let dir = dir?;
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io(e)),
                };
                let mut out = Vec::new();
                while let Some(entry) = entries.next_entry().await.map_err(io)? {
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if name.starts_with('.') || check_name("key", &name).is_err() {
                        continue; // temporary files of interrupted writes, foreign files
                    }
                    out.push((name, tokio::fs::read(entry.path()).await.map_err(io)?));
                }
                out.sort();
                Ok(out)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    async fn contract(store: &dyn Store) {
        assert!(store.list("outbox").await.unwrap().is_empty());
        store.put("outbox", "b", b"2".to_vec()).await.unwrap();
        store.put("outbox", "a", b"1".to_vec()).await.unwrap();
        store.put("keys", "a", b"other".to_vec()).await.unwrap();
        store.put("outbox", "a", b"1bis".to_vec()).await.unwrap();
        assert_eq!(
            store.list("outbox").await.unwrap(),
            vec![("a".into(), b"1bis".to_vec()), ("b".into(), b"2".to_vec())]
        );
        store.delete("outbox", "a").await.unwrap();
        store.delete("outbox", "missing").await.unwrap();
        assert_eq!(store.list("outbox").await.unwrap().len(), 1);
        for bad in ["", "../x", "a/b", "."] {
            let err = store.put("outbox", bad, vec![]).await.unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::InvalidInput, "{bad:?}");
        }
    }

    #[meridian_test]
    async fn the_memory_store_keeps_the_contract() {
        contract(&MemoryStore::new()).await;
    }

    #[cfg(feature = "native")]
    #[tokio::test]
    async fn the_file_store_keeps_the_contract_and_survives_a_reopen() {
        let root =
            std::env::temp_dir().join(format!("meridian-store-{}", crate::secret::random_seed()));
        contract(&FileStore::new(&root)).await;
        let reopened = FileStore::new(&root);
        assert_eq!(
            reopened.list("outbox").await.unwrap(),
            vec![("b".into(), b"2".to_vec())]
        );
        // A temporary file left by a crash mid-write is ignored.
        std::fs::write(root.join("outbox").join(".c.tmp"), b"half").unwrap();
        assert_eq!(reopened.list("outbox").await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(root);
    }
}
