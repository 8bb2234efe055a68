//! The evidence vault: files stored under S3 Object Lock, each with a
//! detached Ed25519 signature, verified after upload and recorded in the
//! ledger (docs/contracts.md §3).
//!
//! - [`naming`]: the key layout `evidence/<client_id>/<YYYY>/<MM>/<bundle_id><ext>`
//!   and the validation that keeps every input inside its prefix.
//! - [`policy`]: retention (90 days COMPLIANCE by default) and its floor.
//! - [`statement`]: the `.sig` format — a C2SP signed note over the key,
//!   size and SHA-256, checkable with the verifier key alone.
//! - [`vault`]: uploads (via `stele_worm`'s streamed multipart uploads),
//!   downloads, signature checks and retention extensions.
//! - [`record`]: the `evidence.*` ledger events and reading them back.
//! - [`audit`]: re-checking recorded evidence against the bucket, for `stele verify`.
//!
//! Nothing is recorded in the ledger until the store has been verified to
//! hold the content, the lock and the signature: callers append the
//! [`record::EvidenceRecord`] that [`Vault::put`] returns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod error;
pub mod naming;
pub mod policy;
pub mod record;
pub mod statement;
pub mod vault;

pub use audit::{CheckOptions, CheckReport, Depth, Finding, Problem, check_uploads};
pub use error::EvidenceError;
pub use naming::{BundleId, ClientId, EvidenceKey, Extension};
pub use policy::RetentionPolicy;
pub use record::{EvidenceRecord, Recorded};
pub use statement::Statement;
pub use vault::{PutItem, Uploaded, Vault};
