-- API keys. Only the SHA-256 of each key is kept: a key is 32 random bytes, so a fast
-- hash is enough, and a stolen table lets nobody call the API. Revocation sets
-- `revoked_us`; rows are never deleted, so what a key could do stays on record.
CREATE TABLE api_keys (
    key_id     text   PRIMARY KEY,
    name       text   NOT NULL,
    role       text   NOT NULL,
    key_hash   bytea  NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_us bigint NOT NULL,
    revoked_us bigint
);
