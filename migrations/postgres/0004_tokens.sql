-- Projections follow the ledger in `seq` order; `next_seq` is the first record a
-- projection has not applied, updated in the same transaction as its view.
CREATE TABLE projection_positions (
    name     text   PRIMARY KEY,
    next_seq bigint NOT NULL CHECK (next_seq >= 0)
);

-- The token projection's state for sessions with transactions not yet sealed
-- (`SessionTokens` as JSON); a session with none pending has no row.
CREATE TABLE token_sessions (
    session_id text PRIMARY KEY,
    state      text NOT NULL
);

-- Sealed transaction tokens: the claims (JSON) and the signed token (compact JWS).
-- A view of the ledger: `vidne projections rebuild` makes it again from the records.
CREATE TABLE transaction_tokens (
    client_id      text   NOT NULL,
    transaction_id text   NOT NULL,
    session_id     text   NOT NULL,
    environment    text   NOT NULL,
    completed_seq  bigint NOT NULL UNIQUE,
    claims         text   NOT NULL,
    jws            text   NOT NULL,
    kid            text   NOT NULL,
    alg            text   NOT NULL,
    PRIMARY KEY (client_id, transaction_id, session_id)
);
