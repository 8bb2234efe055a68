-- The anchor outbox: signed anchors waiting for (or done with) their upload.
CREATE TABLE stele_anchors (
        chain_id     TEXT NOT NULL,
        anchor_seq   INTEGER NOT NULL,
        trigger      TEXT NOT NULL,
        tree_size    INTEGER NOT NULL,
        ts_utc       TEXT NOT NULL,
        object_key   TEXT NOT NULL,
        body         BLOB NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        location     TEXT,
        version_id   TEXT,
        lock_mode    TEXT,
        retain_until TEXT,
        created_at   TEXT NOT NULL,
        uploaded_at  TEXT,
        PRIMARY KEY (chain_id, anchor_seq)
    );
CREATE INDEX stele_anchors_pending ON stele_anchors (status, chain_id, anchor_seq);
