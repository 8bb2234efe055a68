//! Key custody: stele's secrets on disk.
//!
//! A key directory holds
//! - `hmac-keyring.json` (mode 0600): the HMAC chain keys by id and which one is active;
//! - `signing.key` (mode 0600): the Ed25519 checkpoint/anchor signing key, in the
//!   C2SP signed-note private key format (`PRIVATE+KEY+name+id+base64`);
//! - `verifier.vkey`: the matching public verifier key (`name+id+base64`), the
//!   one thing an auditor needs to check checkpoints and anchors.
//!
//! Secret files that group or others can read are refused, not fixed
//! silently: a key that was exposed must be replaced, and only the operator
//! knows whether it was. No error or `Debug` output ever contains key material.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use signed_note::{Signer, StandardSigner};
use stele_ledger::{HmacKey, KeyId, Keyring};
use thiserror::Error;

/// File name of the HMAC keyring.
pub const KEYRING_FILE: &str = "hmac-keyring.json";
/// File name of the signing key.
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// File name of the verifier key.
pub const VERIFIER_KEY_FILE: &str = "verifier.vkey";

/// A key could not be created, read or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key directory or a key file does not exist.
    #[error("{} not found: the keys are created when the ledger is initialized", .0.display())]
    NotFound(PathBuf),
    /// Keys already exist where new ones would be created.
    #[error("{} already holds keys; refusing to overwrite them", .0.display())]
    AlreadyExists(PathBuf),
    /// A secret file is readable or writable by group or others.
    #[error("{} has mode {mode:04o}, readable by other users; keys must be 0600 (chmod 600 it, and replace the key if it may have been exposed)", path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file's contents are not what stele writes.
    #[error("{} is malformed: {what}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the contents).
        what: String,
    },
    /// Input rejected, e.g. an invalid or duplicate key id.
    #[error(transparent)]
    Input(#[from] stele_ledger::event::InputError),
    /// A key id that already exists was asked for.
    #[error("HMAC key id {0:?} already exists; pick a new id")]
    DuplicateKeyId(String),
    /// File system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl KeyError {
    /// True when the same operation may succeed if tried again unchanged:
    /// a file system error that passes (interrupted, timed out, would
    /// block). Missing, malformed, exposed or duplicate keys need a change
    /// first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            Self::NotFound(_)
            | Self::AlreadyExists(_)
            | Self::TooOpen { .. }
            | Self::Malformed { .. }
            | Self::Input(_)
            | Self::DuplicateKeyId(_) => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KeyError::NotFound(path.to_owned())
        } else {
            KeyError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    active: String,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    created: String,
    secret: String,
}

/// Public facts about one HMAC key (never the secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Whether it chains new events.
    pub active: bool,
}

/// A directory of stele keys.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (0700) with a first HMAC key `k1` and a signing key
    /// named `log_name`; returns the verifier key.
    ///
    /// # Errors
    ///
    /// [`KeyError::AlreadyExists`] if keys are there already; I/O errors.
    pub fn create(&self, log_name: &str) -> Result<String, KeyError> {
        if !signed_note::is_key_name_valid(log_name) {
            return Err(KeyError::Malformed {
                path: self.dir.clone(),
                what: format!(
                    "log name {log_name:?} is not a valid signed-note key name (no spaces or '+')"
                ),
            });
        }
        for f in [KEYRING_FILE, SIGNING_KEY_FILE] {
            if self.dir.join(f).exists() {
                return Err(KeyError::AlreadyExists(self.dir.clone()));
            }
        }
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(&self.dir))?;

        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, log_name);
        write_secret(
            &self.dir.join(SIGNING_KEY_FILE),
            format!("{skey}\n").as_bytes(),
            true,
        )?;
        let vpath = self.dir.join(VERIFIER_KEY_FILE);
        fs::write(&vpath, format!("{vkey}\n")).map_err(io_err(&vpath))?;

        let first = KeyringFile {
            version: 1,
            active: "k1".into(),
            keys: vec![new_entry("k1")],
        };
        self.write_keyring(&first, true)?;
        Ok(vkey)
    }

    /// Loads the HMAC keyring.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`], [`KeyError::TooOpen`], [`KeyError::Malformed`], or an unknown active id.
    pub fn keyring(&self) -> Result<Keyring, KeyError> {
        let file = self.read_keyring()?;
        let path = self.dir.join(KEYRING_FILE);
        let keys = file
            .keys
            .iter()
            .map(|e| {
                let secret =
                    BASE64_STANDARD
                        .decode(&e.secret)
                        .map_err(|_| KeyError::Malformed {
                            path: path.clone(),
                            what: format!("secret of key {:?} is not base64", e.id),
                        })?;
                if secret.len() < 32 {
                    return Err(KeyError::Malformed {
                        path: path.clone(),
                        what: format!("key {:?} is shorter than 32 bytes", e.id),
                    });
                }
                Ok(HmacKey::new(KeyId::new(&e.id)?, &secret))
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        Ok(Keyring::new(KeyId::new(&file.active)?, keys)?)
    }

    /// Lists the HMAC keys without their secrets.
    ///
    /// # Errors
    ///
    /// As [`KeyDir::keyring`].
    pub fn key_infos(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let file = self.read_keyring()?;
        Ok(file
            .keys
            .iter()
            .map(|e| KeyInfo {
                id: e.id.clone(),
                created: e.created.clone(),
                active: e.id == file.active,
            })
            .collect())
    }

    /// Adds a new HMAC key and makes it active; old keys stay for verification.
    /// Without `id`, the next `kN` is used.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateKeyId`], invalid ids, and read/write errors.
    pub fn rotate_hmac(&self, id: Option<&str>) -> Result<KeyId, KeyError> {
        let mut file = self.read_keyring()?;
        let id = match id {
            Some(id) => KeyId::new(id)?,
            None => {
                let next = (1..)
                    .find(|n| !file.keys.iter().any(|e| e.id == format!("k{n}")))
                    .unwrap_or(1);
                KeyId::new(&format!("k{next}"))?
            }
        };
        if file.keys.iter().any(|e| e.id == id.as_str()) {
            return Err(KeyError::DuplicateKeyId(id.to_string()));
        }
        file.keys.push(new_entry(id.as_str()));
        file.active = id.to_string();
        self.write_keyring(&file, false)?;
        Ok(id)
    }

    /// Loads the checkpoint signing key.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`], [`KeyError::TooOpen`] or [`KeyError::Malformed`].
    pub fn signer(&self) -> Result<StandardSigner, KeyError> {
        let path = self.dir.join(SIGNING_KEY_FILE);
        let text = read_secret(&path)?;
        StandardSigner::new(text.trim()).map_err(|_| KeyError::Malformed {
            path,
            what: "not a signed-note Ed25519 private key".into(),
        })
    }

    /// The public verifier key, as handed to auditors.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] or I/O errors.
    pub fn verifier_key(&self) -> Result<String, KeyError> {
        let path = self.dir.join(VERIFIER_KEY_FILE);
        Ok(fs::read_to_string(&path)
            .map_err(io_err(&path))?
            .trim()
            .to_owned())
    }

    /// The signing key's name (the log name checkpoints are signed under).
    ///
    /// # Errors
    ///
    /// As [`KeyDir::signer`].
    pub fn log_name(&self) -> Result<String, KeyError> {
        Ok(self.signer()?.name().to_owned())
    }

    fn read_keyring(&self) -> Result<KeyringFile, KeyError> {
        let path = self.dir.join(KEYRING_FILE);
        let text = read_secret(&path)?;
        let file: KeyringFile = serde_json::from_str(&text).map_err(|e| KeyError::Malformed {
            path: path.clone(),
            // serde_json errors name line and column, never the text itself.
            what: format!("not a stele keyring ({})", e.classify_message()),
        })?;
        if file.version != 1 {
            return Err(KeyError::Malformed {
                path,
                what: format!("unsupported keyring version {}", file.version),
            });
        }
        Ok(file)
    }

    fn write_keyring(&self, file: &KeyringFile, create_new: bool) -> Result<(), KeyError> {
        let path = self.dir.join(KEYRING_FILE);
        let text = serde_json::to_vec_pretty(file).map_err(|e| KeyError::Malformed {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_secret(&path, &text, create_new)
    }
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

fn new_entry(id: &str) -> KeyEntry {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    KeyEntry {
        id: id.to_owned(),
        created,
        secret: BASE64_STANDARD.encode(secret),
    }
}

/// Reads a secret file after checking nobody else can read it (mode 0600
/// or stricter).
///
/// # Errors
///
/// [`KeyError::TooOpen`] for a file others may read; I/O errors.
pub fn read_secret(path: &Path) -> Result<String, KeyError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(io_err(path))
}

/// Writes a secret file with mode 0600, atomically (temp file, fsync, rename)
/// so a crash never leaves a half-written keyring.
fn write_secret(path: &Path, bytes: &[u8], create_new: bool) -> Result<(), KeyError> {
    if create_new && path.exists() {
        return Err(KeyError::AlreadyExists(path.to_owned()));
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_are_not_retryable_and_name_no_cli_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let err = KeyDir::new(tmp.path().join("none"))
            .verifier_key()
            .expect_err("no keys there");
        assert!(matches!(err, KeyError::NotFound(_)), "{err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(!text.contains("--") && !text.contains("`stele "), "{text}");
        let interrupted = KeyError::Io {
            path: "k".into(),
            source: std::io::Error::from(std::io::ErrorKind::Interrupted),
        };
        assert!(interrupted.is_retryable());
        let denied = KeyError::Io {
            path: "k".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!denied.is_retryable());
    }

    #[test]
    fn create_load_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(tmp.path().join("keys"));
        let vkey = keys.create("stele.test").unwrap();
        assert!(vkey.starts_with("stele.test+"), "{vkey}");
        assert_eq!(keys.verifier_key().unwrap(), vkey);
        assert_eq!(keys.log_name().unwrap(), "stele.test");
        assert_eq!(keys.keyring().unwrap().active().id().as_str(), "k1");
        assert!(matches!(
            keys.create("stele.test"),
            Err(KeyError::AlreadyExists(_))
        ));

        let mode = fs::metadata(keys.path().join(KEYRING_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        assert_eq!(keys.rotate_hmac(None).unwrap().as_str(), "k2");
        let ring = keys.keyring().unwrap();
        assert_eq!(ring.active().id().as_str(), "k2");
        assert!(ring.get("k1").is_some(), "old keys stay for verification");
        assert!(matches!(
            keys.rotate_hmac(Some("k1")),
            Err(KeyError::DuplicateKeyId(_))
        ));
        assert!(keys.rotate_hmac(Some("bad id")).is_err());
        let infos = keys.key_infos().unwrap();
        assert_eq!(infos.iter().filter(|k| k.active).count(), 1);
    }

    #[test]
    fn world_readable_keys_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(tmp.path());
        keys.create("stele.test").unwrap();
        for f in [KEYRING_FILE, SIGNING_KEY_FILE] {
            let p = tmp.path().join(f);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        assert!(matches!(
            keys.keyring(),
            Err(KeyError::TooOpen { mode: 0o644, .. })
        ));
        assert!(matches!(keys.signer(), Err(KeyError::TooOpen { .. })));
    }

    #[test]
    fn malformed_and_unknown_active_keys_are_refused_without_leaking() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(tmp.path());
        keys.create("stele.test").unwrap();
        let p = tmp.path().join(KEYRING_FILE);
        let text = fs::read_to_string(&p).unwrap();
        let secret: serde_json::Value = serde_json::from_str(&text).unwrap();
        let secret = secret["keys"][0]["secret"].as_str().unwrap().to_owned();

        write_secret(
            &p,
            text.replace("\"active\": \"k1\"", "\"active\": \"k7\"")
                .as_bytes(),
            false,
        )
        .unwrap();
        let err = keys.keyring().unwrap_err().to_string();
        assert!(err.contains("unknown HMAC key id \"k7\""), "{err}");

        write_secret(&p, text.replace(&secret, "!!!").as_bytes(), false).unwrap();
        let err = keys.keyring().unwrap_err().to_string();
        assert!(
            err.contains("not base64") && !err.contains(&secret),
            "{err}"
        );

        write_secret(&p, format!("{{\"secret\": \"{secret}\"").as_bytes(), false).unwrap();
        let err = keys.keyring().unwrap_err().to_string();
        assert!(!err.contains(&secret), "{err}");
        assert!(matches!(
            KeyDir::new(tmp.path().join("nope")).keyring(),
            Err(KeyError::NotFound(_))
        ));
    }
}
