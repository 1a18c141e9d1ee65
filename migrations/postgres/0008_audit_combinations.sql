-- The audit index answers a combination of two common members (an SP client and a type,
-- a client and an IdP, a type and an IdP) from one index, in `seq` order. Without these,
-- a combination that matches nothing walked all of one member's rows: 1.5 s for a client
-- and a type at 10,000,000 records (`vidne bench audit`). audit_clients carries each
-- record's type and IdP for it.
ALTER TABLE audit_clients ADD COLUMN event_type TEXT, ADD COLUMN idp TEXT;
UPDATE audit_clients c SET event_type = a.event_type, idp = a.idp
    FROM audit_index a WHERE a.seq = c.seq;
ALTER TABLE audit_clients ALTER COLUMN event_type SET NOT NULL;
CREATE INDEX audit_clients_type ON audit_clients (client_id, event_type, seq);
CREATE INDEX audit_clients_idp ON audit_clients (client_id, idp, seq) WHERE idp IS NOT NULL;
CREATE INDEX audit_index_type_idp ON audit_index (event_type, idp, seq) WHERE idp IS NOT NULL;
