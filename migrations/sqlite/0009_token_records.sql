-- The records each sealed token binds (its claims' `ledger.records`), by the token's
-- SP client. An SP key may read these through the log's routes as well as its own
-- records: an SSO reuse binds the session's earlier login, which is another SP's
-- transaction's record, and the SP must read it to check its token. Written with the
-- token, in the token projection's transaction; filled here for tokens sealed before.
CREATE TABLE token_records (
    client_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO token_records (client_id, seq)
SELECT t.client_id, json_extract(r.value, '$.seq')
FROM transaction_tokens t, json_each(t.claims, '$.ledger.records') AS r;
