-- The audit index answers a combination of two common members (an SP client and a type,
-- a client and an IdP, a type and an IdP) from one index, in `seq` order. Without these,
-- a combination that matches nothing walked all of one member's rows: 1.5 s for a client
-- and a type at 10,000,000 records (`vidne bench audit`). audit_clients carries each
-- record's type and IdP for it (always written; NULL only in rows older than this, and
-- the UPDATE below fills those).
ALTER TABLE audit_clients ADD COLUMN event_type TEXT;
ALTER TABLE audit_clients ADD COLUMN idp TEXT;
UPDATE audit_clients SET
    event_type = (SELECT a.event_type FROM audit_index a WHERE a.seq = audit_clients.seq),
    idp = (SELECT a.idp FROM audit_index a WHERE a.seq = audit_clients.seq);
CREATE INDEX audit_clients_type ON audit_clients (client_id, event_type, seq);
CREATE INDEX audit_clients_idp ON audit_clients (client_id, idp, seq) WHERE idp IS NOT NULL;
CREATE INDEX audit_index_type_idp ON audit_index (event_type, idp, seq) WHERE idp IS NOT NULL;
