-- Idempotency keys: the first answer to each (caller, key), replayed to retries. `scope`
-- is the SHA-256 of the caller's API key, `fingerprint` a keyed hash of the request
-- (method, path, body) so that a reused key with another request is refused without the
-- request itself (which may hold a CPR number) being stored. `status` is NULL while the
-- first request runs.
CREATE TABLE idempotency (
    scope        bytea  NOT NULL,
    idem_key     text   NOT NULL,
    fingerprint  bytea  NOT NULL,
    status       integer,
    content_type text,
    body         bytea,
    created_us   bigint NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
