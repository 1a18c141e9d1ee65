-- The records each sealed token binds (its claims' `ledger.records`), by the token's
-- SP client. An SP key may read these through the log's routes as well as its own
-- records: an SSO reuse binds the session's earlier login, which is another SP's
-- transaction's record, and the SP must read it to check its token. Written with the
-- token, in the token projection's transaction; filled here for tokens sealed before.
CREATE TABLE token_records (
    client_id text   NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (client_id, seq)
);
INSERT INTO token_records (client_id, seq)
SELECT DISTINCT t.client_id, (r.value ->> 'seq')::bigint
FROM transaction_tokens t,
     jsonb_array_elements(t.claims::jsonb -> 'ledger' -> 'records') AS r(value)
ON CONFLICT DO NOTHING;
