-- Chains (their heads) and their events, one row per event with the Merkle
-- nodes its append completed.
CREATE TABLE stele_chains (
        chain_id   text PRIMARY KEY,
        tree_size  bigint NOT NULL,
        head_hash  bytea NOT NULL,
        last_ts    text,
        created_at timestamptz NOT NULL DEFAULT now()
    );
CREATE TABLE audit_events (
        chain_id        text NOT NULL,
        chain_index     bigint NOT NULL,
        ts              text NOT NULL,
        event_type      text NOT NULL,
        actor           text,
        payload         text,
        idempotency_key text,
        key_id          text NOT NULL,
        leaf_hash       bytea NOT NULL,
        event_hash      bytea NOT NULL,
        merkle_nodes    bytea NOT NULL,
        PRIMARY KEY (chain_id, chain_index)
    );
CREATE UNIQUE INDEX audit_events_idempotency
        ON audit_events (chain_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
