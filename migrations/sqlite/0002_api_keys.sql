-- API keys. Only the SHA-256 of each key is kept: a key is 32 random bytes, so a fast
-- hash is enough, and a stolen table lets nobody call the API. Revocation sets
-- `revoked_us`; rows are never deleted, so what a key could do stays on record.
CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_hash   BLOB    NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_us INTEGER NOT NULL,
    revoked_us INTEGER
) STRICT;
