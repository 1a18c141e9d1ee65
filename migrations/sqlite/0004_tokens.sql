-- Projections follow the ledger in `seq` order; `next_seq` is the first record a
-- projection has not applied, updated in the same transaction as its view.
CREATE TABLE projection_positions (
    name     TEXT    PRIMARY KEY,
    next_seq INTEGER NOT NULL CHECK (next_seq >= 0)
) STRICT;

-- The token projection's state for sessions with transactions not yet sealed
-- (`SessionTokens` as JSON); a session with none pending has no row.
CREATE TABLE token_sessions (
    session_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL
) STRICT;

-- Sealed transaction tokens: the claims (JSON) and the signed token (compact JWS).
-- A view of the ledger: `vidne projections rebuild` makes it again from the records.
CREATE TABLE transaction_tokens (
    client_id      TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    session_id     TEXT    NOT NULL,
    environment    TEXT    NOT NULL,
    completed_seq  INTEGER NOT NULL UNIQUE,
    claims         TEXT    NOT NULL,
    jws            TEXT    NOT NULL,
    kid            TEXT    NOT NULL,
    alg            TEXT    NOT NULL,
    PRIMARY KEY (client_id, transaction_id, session_id)
) STRICT;
