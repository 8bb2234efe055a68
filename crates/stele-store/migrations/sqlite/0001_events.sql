-- Chains (their heads) and their events, one row per event with the Merkle
-- nodes its append completed.
CREATE TABLE stele_chains (
        chain_id   TEXT PRIMARY KEY,
        tree_size  INTEGER NOT NULL,
        head_hash  BLOB NOT NULL,
        last_ts    TEXT,
        created_at TEXT NOT NULL
    );
CREATE TABLE audit_events (
        chain_id        TEXT NOT NULL,
        chain_index     INTEGER NOT NULL,
        ts              TEXT NOT NULL,
        event_type      TEXT NOT NULL,
        actor           TEXT,
        payload         TEXT,
        idempotency_key TEXT,
        key_id          TEXT NOT NULL,
        leaf_hash       BLOB NOT NULL,
        event_hash      BLOB NOT NULL,
        merkle_nodes    BLOB NOT NULL,
        PRIMARY KEY (chain_id, chain_index)
    ) WITHOUT ROWID;
CREATE UNIQUE INDEX audit_events_idempotency
        ON audit_events (chain_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
