-- The anchor outbox: signed anchors waiting for (or done with) their upload.
CREATE TABLE stele_anchors (
        chain_id     text NOT NULL,
        anchor_seq   bigint NOT NULL,
        trigger      text NOT NULL,
        tree_size    bigint NOT NULL,
        ts_utc       text NOT NULL,
        object_key   text NOT NULL,
        body         bytea NOT NULL,
        status       text NOT NULL,
        attempts     bigint NOT NULL DEFAULT 0,
        last_error   text,
        location     text,
        version_id   text,
        lock_mode    text,
        retain_until text,
        created_at   text NOT NULL,
        uploaded_at  text,
        PRIMARY KEY (chain_id, anchor_seq)
    );
CREATE INDEX stele_anchors_pending ON stele_anchors (status, chain_id, anchor_seq);
