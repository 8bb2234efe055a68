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
//! A test whose service variables are missing panics and says so; it never
//! passes silently.
