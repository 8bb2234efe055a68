-- Outbox leases: who may upload a pending anchor, until when (Unix
-- milliseconds; processes sharing one SQLite file share one clock).
ALTER TABLE stele_anchors ADD COLUMN lease_owner TEXT;
ALTER TABLE stele_anchors ADD COLUMN lease_until INTEGER;
