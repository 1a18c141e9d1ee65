-- The audit index: a projection of the ledger that answers auditors' filtered queries
-- (`GET /v1/audit/records`). One row per record with what the record says or its
-- session implies: its transaction, IdP, the person (subject_key, cpr_ref). Records
-- are attributed to SP clients in audit_clients (a session's logout belongs to every
-- SP the session served). `projection_positions` names how far it has got.
CREATE TABLE audit_index (
    seq            INTEGER PRIMARY KEY,
    event_type     TEXT    NOT NULL,
    transaction_id TEXT,
    idp            TEXT,
    subject_key    TEXT,
    cpr_ref        TEXT
) STRICT;
CREATE INDEX audit_index_type ON audit_index (event_type, seq);
CREATE INDEX audit_index_transaction ON audit_index (transaction_id, seq) WHERE transaction_id IS NOT NULL;
CREATE INDEX audit_index_idp ON audit_index (idp, seq) WHERE idp IS NOT NULL;
CREATE INDEX audit_index_subject ON audit_index (subject_key, seq) WHERE subject_key IS NOT NULL;
CREATE INDEX audit_index_cpr ON audit_index (cpr_ref, seq) WHERE cpr_ref IS NOT NULL;

CREATE TABLE audit_clients (
    client_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)
) STRICT, WITHOUT ROWID;

-- What the index remembers of a session between records (its transactions' clients
-- and IdPs, its subject), as JSON; removed at logout.
CREATE TABLE audit_sessions (
    session_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL
) STRICT;
