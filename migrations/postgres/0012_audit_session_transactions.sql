-- A session's open transactions (their client and IdP), a row each, rather than inside
-- the session's trail in audit_sessions: a batch of the audit index reads and writes the
-- rows of the transactions it sees, not the whole trail of every session it touches. A
-- session that kept thousands of transactions open made each batch rewrite them all:
-- indexing grew with the square of the ledger (1,000,000 records of `vidne bench append`
-- took about 10 minutes and 449 MB). The trails' transactions move here.
CREATE TABLE audit_session_transactions (
    session_id     text NOT NULL,
    transaction_id text NOT NULL,
    client_id      text NOT NULL,
    idp            text,
    PRIMARY KEY (session_id, transaction_id)
);
INSERT INTO audit_session_transactions (session_id, transaction_id, client_id, idp)
SELECT s.session_id, t.key, t.value ->> 0, t.value ->> 1
FROM audit_sessions s, jsonb_each(s.state::jsonb -> 'transactions') AS t
WHERE jsonb_typeof(s.state::jsonb -> 'transactions') = 'object'
ON CONFLICT DO NOTHING;
UPDATE audit_sessions SET state = (state::jsonb - 'transactions')::text
WHERE state::jsonb ? 'transactions';
