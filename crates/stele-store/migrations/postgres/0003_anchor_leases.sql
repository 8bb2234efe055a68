-- Outbox leases: who may upload a pending anchor, until when (the server's
-- clock, so every node agrees on expiry).
ALTER TABLE stele_anchors ADD COLUMN lease_owner text, ADD COLUMN lease_until timestamptz;
