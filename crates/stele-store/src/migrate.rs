//! The ledger's schema: one list of migrations, each an SQL file per backend
//! (`migrations/sqlite/NNNN_name.sql` and `migrations/postgres/NNNN_name.sql`,
//! embedded), and the one decision of what to apply, shared by the backends.
//!
//! A backend reads the applied version without writing. If [`pending`] finds
//! nothing to do (the usual open), no transaction is started, so a role that
//! may only read can open a current ledger. Otherwise the backend opens one
//! transaction holding its lock against concurrent first starts (SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL an advisory lock), creates `stele_schema` if
//! it is missing, and calls [`apply_pending`], which reads the version again
//! under that lock, then applies and records each pending migration in order.
//! The decisions ([`pending`], [`check_read_only`]) do no I/O, so a backend
//! on another driver reuses them as they are.
//!
//! `stele_schema` (`version`, `applied_at`) is what every ledger since the
//! first release holds; it is not itself a migration. Versions 1–3 are, byte
//! for byte, the SQL earlier releases ran (SQLite keeps the text of each
//! `CREATE` in `sqlite_master`, indentation included): a released migration
//! is never edited; a change is the next version, on both backends.

use std::fmt;

use crate::StoreError;

/// One schema migration, with the same version and name on both backends.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Recorded in `stele_schema` once applied; 1, 2, 3, … in order.
    pub(crate) version: i64,
    /// The file name without `.sql`, `NNNN_what` with `NNNN` the version.
    pub(crate) name: &'static str,
    /// The statements for SQLite.
    pub(crate) sqlite: &'static str,
    /// The statements for PostgreSQL.
    pub(crate) postgres: &'static str,
}

/// A migration read from `migrations/sqlite/<file>.sql` and
/// `migrations/postgres/<file>.sql`: without either file the crate does not
/// build, so no version exists on one backend only.
macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sqlite: include_str!(concat!("../migrations/sqlite/", $file, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $file, ".sql")),
        }
    };
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_events"),
    migration!(2, "0002_anchors"),
    migration!(3, "0003_anchor_leases"),
    migration!(4, "0004_events_by_insertion"),
];

/// The schema version this build reads and writes.
pub(crate) const SUPPORTED: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The oldest schema version a read-only open accepts as it is: every
/// migration after it changes only how rows are laid out, not the tables
/// and columns reads name (version 4 moved SQLite's events to a rowid
/// table). An auditor's copy written by the release before reads unchanged.
pub(crate) const OLDEST_READABLE: i64 = 3;

// Versions run 1, 2, 3, … without a gap, each file named after its version:
// checked when the crate builds.
const _: () = assert!(
    numbered_in_order(MIGRATIONS),
    "migrations must be numbered 1, 2, 3, … in order, each file named NNNN_what after its version"
);

const fn numbered_in_order(list: &[Migration]) -> bool {
    let mut i = 0;
    while i < list.len() {
        let m = &list[i];
        let name = m.name.as_bytes();
        if m.version != i as i64 + 1 || name.len() < 6 || name[4] != b'_' {
            return false;
        }
        let mut from_name = 0;
        let mut d = 0;
        while d < 4 {
            if !name[d].is_ascii_digit() {
                return false;
            }
            from_name = from_name * 10 + (name[d] - b'0') as i64;
            d += 1;
        }
        if from_name != m.version {
            return false;
        }
        i += 1;
    }
    true
}

/// The migrations still to apply, in order, to a ledger whose highest
/// applied version is `applied` (`None`: no stele schema yet).
///
/// # Errors
///
/// [`StoreError::SchemaTooNew`] for a ledger written by a newer stele (it
/// is left alone); [`StoreError::Corrupt`] for a negative version.
pub(crate) fn pending(applied: Option<i64>) -> Result<&'static [Migration], StoreError> {
    let applied = applied.unwrap_or(0);
    if applied > SUPPORTED {
        return Err(StoreError::SchemaTooNew {
            found: applied,
            supported: SUPPORTED,
        });
    }
    let done = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt(format!("stele_schema records version {applied}")))?;
    // Versions are 1..=N in order, so the first `done` are applied.
    Ok(&MIGRATIONS[done..])
}

/// For a read-only open: the schema must be one this build reads as it is
/// ([`OLDEST_READABLE`] to [`SUPPORTED`]), since a read-only session cannot
/// migrate it.
///
/// # Errors
///
/// [`StoreError::SchemaTooNew`]; [`StoreError::Open`] for no stele schema
/// or an older one, saying how to bring it up to date.
pub(crate) fn check_read_only(location: &str, found: Option<i64>) -> Result<(), StoreError> {
    pending(found)?;
    match found {
        Some(found) if found >= OLDEST_READABLE => Ok(()),
        _ => Err(StoreError::open_refused(
            location,
            match found {
                None => "it holds no stele ledger".into(),
                Some(found) => format!(
                    "its schema (version {found}) is older than this stele reads \
                     ({OLDEST_READABLE} to {SUPPORTED}), \
                     and reading must not migrate it: run any writing stele command on it once \
                     (its operator can), or read it with the stele release that wrote it"
                ),
            },
        )),
    }
}

/// A backend's migration transaction: open, holding the lock that
/// serializes concurrent first starts, with `stele_schema` present.
pub(crate) trait MigrationTx {
    /// `"SQLite"` or `"PostgreSQL"`, for the log.
    fn backend(&self) -> &'static str;

    /// The highest version recorded in `stele_schema` (0 if none).
    fn recorded_version(&mut self) -> Result<i64, StoreError>;

    /// Runs this backend's statements of `m` and records `m.version`.
    fn apply(&mut self, m: &Migration) -> Result<(), StoreError>;
}

/// Reads the recorded version inside the migration transaction (a
/// concurrent first start may have migrated while this one waited for the
/// lock), then applies and records each pending migration in order. The
/// caller commits; on any error it rolls back and nothing was changed.
///
/// # Errors
///
/// As [`pending`]; database errors.
pub(crate) fn apply_pending(tx: &mut impl MigrationTx) -> Result<(), StoreError> {
    let recorded = tx.recorded_version()?;
    for m in pending(Some(recorded))? {
        tracing::info!(
            version = m.version,
            name = m.name,
            backend = tx.backend(),
            "applying schema migration"
        );
        tx.apply(m)?;
    }
    Ok(())
}

/// A row as errors about its stored values name it. Neither backend has
/// unsigned integers, so counts and positions are stored signed; a value
/// stele cannot have written there is reported with the row it is in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoredRow<'a> {
    /// An `audit_events` row, by its stored `chain_index`.
    Event { chain: &'a str, seq: i64 },
    /// A `stele_anchors` row, by its stored `anchor_seq`.
    Anchor { chain: &'a str, anchor_seq: i64 },
    /// A `stele_chains` row.
    Head { chain: &'a str },
}

impl fmt::Display for StoredRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event { chain, seq } => write!(f, "event seq {seq} of chain {chain:?}"),
            Self::Anchor { chain, anchor_seq } => {
                write!(f, "anchor {anchor_seq} of chain {chain:?}")
            }
            Self::Head { chain } => write!(f, "the head of chain {chain:?}"),
        }
    }
}

impl StoredRow<'_> {
    /// `value`, read from `column` of this row, as the unsigned type stele
    /// wrote it from.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the row, the column and the value.
    pub(crate) fn unsigned<T: TryFrom<i64>>(
        self,
        column: &str,
        value: i64,
    ) -> Result<T, StoreError> {
        T::try_from(value).map_err(|_| {
            StoreError::Corrupt(format!(
                "{self}: {column} is {value}, which stele never writes"
            ))
        })
    }

    /// `value`, read from `column` of this row, parsed into the type stele
    /// wrote it from (a trigger, a status, a lock mode, a time).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the row, the column and the value.
    pub(crate) fn parsed<T>(
        self,
        column: &str,
        value: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        parse(value).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{self}: {column} is {:?}, which stele never writes",
                value.chars().take(64).collect::<String>()
            ))
        })
    }

    /// [`parsed`](Self::parsed) for a column that may be NULL.
    ///
    /// # Errors
    ///
    /// As [`parsed`](Self::parsed).
    pub(crate) fn parsed_opt<T>(
        self,
        column: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        value.map(|v| self.parsed(column, v, parse)).transpose()
    }
}

/// An outbox row from its stored values, the typed columns parsed (so a
/// value stele never writes is [`StoreError::Corrupt`] naming the row).
pub(crate) struct AnchorRow {
    pub(crate) chain_id: String,
    pub(crate) anchor_seq: i64,
    pub(crate) trigger: String,
    pub(crate) tree_size: i64,
    pub(crate) ts_utc: String,
    pub(crate) object_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) version_id: Option<String>,
    pub(crate) lock_mode: Option<String>,
    pub(crate) retain_until: Option<String>,
    pub(crate) uploaded_at: Option<String>,
}

impl AnchorRow {
    pub(crate) fn typed(self) -> Result<stele_anchor::AnchorRecord, StoreError> {
        let row = StoredRow::Anchor {
            chain: &self.chain_id,
            anchor_seq: self.anchor_seq,
        };
        Ok(stele_anchor::AnchorRecord {
            anchor_seq: row.unsigned("anchor_seq", self.anchor_seq)?,
            trigger: row.parsed("trigger", &self.trigger, stele_anchor::Trigger::parse)?,
            tree_size: row.unsigned("tree_size", self.tree_size)?,
            status: row.parsed("status", &self.status, stele_anchor::AnchorStatus::parse)?,
            attempts: row.unsigned("attempts", self.attempts)?,
            lock_mode: row.parsed_opt(
                "lock_mode",
                self.lock_mode.as_deref(),
                stele_anchor::LockMode::parse,
            )?,
            retain_until: row.parsed_opt(
                "retain_until",
                self.retain_until.as_deref(),
                stele_anchor::parse_retain_until,
            )?,
            ts_utc: self.ts_utc,
            object_key: self.object_key,
            body: self.body,
            last_error: self.last_error,
            location: self.location,
            version_id: self.version_id,
            uploaded_at: self.uploaded_at,
            chain_id: self.chain_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `.sql` file in `migrations/<backend>/` is listed, so a file
    /// added on one side (or not listed) is caught; the listing itself
    /// cannot name a file missing on either side (the crate would not build).
    #[test]
    fn every_migration_file_is_listed_on_both_backends() {
        let listed: BTreeSet<String> = MIGRATIONS.iter().map(|m| m.name.to_owned()).collect();
        for backend in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let files: BTreeSet<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .map(|file| match file.strip_suffix(".sql") {
                    Some(stem) => stem.to_owned(),
                    None => panic!("{}: {file} is not a migration", dir.display()),
                })
                .collect();
            assert_eq!(files, listed, "{}", dir.display());
        }
    }

    #[test]
    fn the_numbering_check_refuses_gaps_and_misnamed_files() {
        let m = |version, name| Migration {
            version,
            name,
            sqlite: "",
            postgres: "",
        };
        assert!(numbered_in_order(&[m(1, "0001_a"), m(2, "0002_b")]));
        assert!(!numbered_in_order(&[m(1, "0001_a"), m(3, "0003_b")]));
        assert!(!numbered_in_order(&[m(2, "0002_a")]));
        assert!(!numbered_in_order(&[m(1, "0002_a")]));
        assert!(!numbered_in_order(&[m(1, "1_a")]));
        assert!(!numbered_in_order(&[m(1, "000x_a")]));
    }

    #[test]
    fn pending_is_what_lies_past_the_applied_version() {
        let versions = |applied| -> Vec<i64> {
            pending(applied)
                .unwrap()
                .iter()
                .map(|m| m.version)
                .collect()
        };
        let all: Vec<i64> = (1..=SUPPORTED).collect();
        assert_eq!(versions(None), all);
        assert_eq!(versions(Some(0)), all);
        assert_eq!(versions(Some(1)), all[1..]);
        assert_eq!(versions(Some(SUPPORTED)), Vec::<i64>::new());
        assert!(matches!(
            pending(Some(SUPPORTED + 1)),
            Err(StoreError::SchemaTooNew { found, supported }) if found == SUPPORTED + 1 && supported == SUPPORTED
        ));
        assert!(matches!(pending(Some(-1)), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_read_only_open_needs_a_schema_it_reads_as_it_is() {
        for readable in OLDEST_READABLE..=SUPPORTED {
            assert!(check_read_only("here", Some(readable)).is_ok());
        }
        let err = check_read_only("here", None).unwrap_err();
        assert!(err.to_string().contains("holds no stele ledger"), "{err}");
        let err = check_read_only("here", Some(OLDEST_READABLE - 1)).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "(version {}) is older than this stele reads ({OLDEST_READABLE} to {SUPPORTED})",
                OLDEST_READABLE - 1
            )),
            "{err}"
        );
        assert!(matches!(
            check_read_only("here", Some(SUPPORTED + 1)),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }

    /// A recording stand-in for a backend: what the runner asked of it.
    struct Recorder {
        recorded: i64,
        applied: Vec<i64>,
    }

    impl MigrationTx for Recorder {
        fn backend(&self) -> &'static str {
            "test"
        }
        fn recorded_version(&mut self) -> Result<i64, StoreError> {
            Ok(self.recorded)
        }
        fn apply(&mut self, m: &Migration) -> Result<(), StoreError> {
            self.applied.push(m.version);
            self.recorded = m.version;
            Ok(())
        }
    }

    #[test]
    fn the_runner_applies_what_is_pending_under_the_lock_in_order() {
        let mut fresh = Recorder {
            recorded: 0,
            applied: vec![],
        };
        apply_pending(&mut fresh).unwrap();
        assert_eq!(fresh.applied, (1..=SUPPORTED).collect::<Vec<_>>());
        // Another first start migrated while this one waited for the lock.
        let mut raced = Recorder {
            recorded: SUPPORTED,
            applied: vec![],
        };
        apply_pending(&mut raced).unwrap();
        assert!(raced.applied.is_empty());
        let mut newer = Recorder {
            recorded: SUPPORTED + 1,
            applied: vec![],
        };
        assert!(matches!(
            apply_pending(&mut newer),
            Err(StoreError::SchemaTooNew { .. })
        ));
        assert!(newer.applied.is_empty());
    }

    #[test]
    fn a_value_stele_never_writes_is_corruption_named_by_its_row() {
        let row = StoredRow::Anchor {
            chain: "c",
            anchor_seq: 4,
        };
        assert_eq!(row.unsigned::<u32>("attempts", 2).unwrap(), 2);
        let err = row.unsigned::<u32>("attempts", -1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored data is corrupt: anchor 4 of chain \"c\": attempts is -1, which stele never writes"
        );
        assert!(
            row.unsigned::<u32>("attempts", i64::from(u32::MAX) + 1)
                .is_err()
        );
        let row = StoredRow::Event {
            chain: "c",
            seq: -3,
        };
        assert_eq!(
            row.unsigned::<u64>("chain_index", -3)
                .unwrap_err()
                .to_string(),
            "stored data is corrupt: event seq -3 of chain \"c\": chain_index is -3, which stele never writes"
        );
    }
}
