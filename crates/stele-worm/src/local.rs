//! A local directory standing in for WORM storage in demos and the embedded
//! default. It is **not** WORM storage: files can be changed by anyone with
//! access to them. It keeps the same create-only semantics so code paths
//! match, and reports `worm: false` everywhere.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{Retention, StoredObject, WormError, sha256_hex};

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WormError + '_ {
    move |source| WormError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalDir {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, WormError> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|s| s == ".." || s == "." || s.is_empty())
        {
            return Err(WormError::Config(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    /// Writes create-only; identical existing bytes count as success.
    ///
    /// # Errors
    ///
    /// [`WormError::Conflict`] or I/O errors.
    pub fn put_locked(
        &self,
        key: &str,
        bytes: &[u8],
        _retention: Retention,
    ) -> Result<StoredObject, WormError> {
        let path = self.path(key)?;
        let sha = sha256_hex(bytes);
        let stored = |already_present| StoredObject {
            key: key.to_owned(),
            version_id: None,
            size: bytes.len() as u64,
            sha256: sha.clone(),
            verified_by: "bytes",
            lock_mode: None,
            retain_until: None,
            kms_key_id: None,
            already_present,
            worm: false,
        };
        if let Ok(existing) = fs::read(&path) {
            let existing_sha = sha256_hex(&existing);
            return if existing_sha == sha {
                Ok(stored(true))
            } else {
                Err(WormError::Conflict {
                    key: key.to_owned(),
                    existing: existing_sha,
                    version_id: None,
                })
            };
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        let back = fs::read(&path).map_err(io(&path))?;
        if sha256_hex(&back) != sha {
            return Err(WormError::Verification {
                key: key.to_owned(),
                what: "the file does not hold what was written".into(),
            });
        }
        Ok(stored(false))
    }

    /// Reads an object.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, WormError> {
        let path = self.path(key)?;
        fs::read(&path).map_err(io(&path))
    }

    /// Keys under `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, WormError> {
        self.list_after(prefix, None)
    }

    /// Keys under `prefix` that sort after `start_after` (all if `None`), in key order.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, WormError> {
        let mut keys = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(WormError::Io {
                        path: dir.display().to_string(),
                        source: e,
                    });
                }
            };
            for entry in entries {
                let path = entry.map_err(io(&dir))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix)
                        && start_after.is_none_or(|after| key.as_str() > after)
                    {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LockMode;

    #[test]
    fn create_only_and_listing() {
        let tmp = std::env::temp_dir().join(format!("stele-localdir-{}", std::process::id()));
        let store = LocalDir::new(&tmp);
        let r = Retention {
            mode: LockMode::Compliance,
            retain_until: time::OffsetDateTime::now_utc(),
        };
        let first = store.put_locked("anchors/c/0.json", b"a", r).unwrap();
        assert!(!first.worm && !first.already_present);
        assert!(
            store
                .put_locked("anchors/c/0.json", b"a", r)
                .unwrap()
                .already_present
        );
        assert!(matches!(
            store.put_locked("anchors/c/0.json", b"b", r),
            Err(WormError::Conflict { .. })
        ));
        store.put_locked("anchors/c/1.json", b"b", r).unwrap();
        assert_eq!(
            store.list("anchors/c/").unwrap(),
            ["anchors/c/0.json", "anchors/c/1.json"]
        );
        assert_eq!(
            store
                .list_after("anchors/c/", Some("anchors/c/0.json"))
                .unwrap(),
            ["anchors/c/1.json"]
        );
        assert!(store.put_locked("../escape", b"x", r).is_err());
        let _ = fs::remove_dir_all(tmp);
    }
}
