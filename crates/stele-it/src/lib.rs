//! Live-service integration tests for stele.
//!
//! This crate has no library code. Its `tests/` talk over real connections to
//! the services that `scripts/test-services.sh` starts on 127.0.0.1: Ceph RADOS
//! Gateway (a real S3 store that enforces Object Lock), ministack (an AWS
//! emulator for the APIs RGW lacks) and Postgres. Endpoints and test
//! credentials come from the `STELE_TEST_*` environment variables that the
//! script writes to `<state dir>/env`.
//!
//! Run them with `scripts/test.sh`, which starts the services, exports the
//! variables, runs the whole workspace's tests and stops the services again.
//! Under plain `cargo test` a test whose service variables are missing is
//! skipped with one line on stderr; under `scripts/test.sh`
//! (`STELE_TEST_REQUIRE_LIVE=1`) it fails and says so.
