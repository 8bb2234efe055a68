-- Events move from a WITHOUT ROWID table to a rowid table with the same
-- columns and key. An event row is hundreds of bytes, past the size SQLite
-- advises for WITHOUT ROWID: each append then rebalanced the last pages of
-- the key's B-tree. In a rowid table new rows go in at the end of the table
-- on SQLite's append path, and (chain_id, chain_index) becomes a narrow
-- index beside it. Rows are copied in key order, unchanged.
CREATE TABLE audit_events_by_insertion (
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
    );
INSERT INTO audit_events_by_insertion (chain_id, chain_index, ts, event_type, actor, payload,
        idempotency_key, key_id, leaf_hash, event_hash, merkle_nodes)
    SELECT chain_id, chain_index, ts, event_type, actor, payload,
        idempotency_key, key_id, leaf_hash, event_hash, merkle_nodes
    FROM audit_events ORDER BY chain_id, chain_index;
DROP TABLE audit_events;
ALTER TABLE audit_events_by_insertion RENAME TO audit_events;
CREATE UNIQUE INDEX audit_events_idempotency
        ON audit_events (chain_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
