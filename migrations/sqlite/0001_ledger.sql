-- The ledger (SPEC section 8). `canonical` holds the exact bytes that were hashed;
-- the other columns are indexes over them, and `vidne verify` checks they agree.
CREATE TABLE ledger_records (
    seq        INTEGER PRIMARY KEY CHECK (seq >= 0),
    stream     TEXT    NOT NULL,
    stream_seq INTEGER NOT NULL CHECK (stream_seq >= 1),
    event_type TEXT    NOT NULL,
    time_us    INTEGER NOT NULL,
    canonical  BLOB    NOT NULL,
    hash       BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Optimistic concurrency: a duplicate (stream, stream_seq) can never be stored.
CREATE UNIQUE INDEX ledger_records_stream ON ledger_records (stream, stream_seq);

-- The chain head. Writers take SQLite's write lock (BEGIN IMMEDIATE) before reading it.
CREATE TABLE ledger_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq     INTEGER NOT NULL CHECK (next_seq >= 0),
    last_hash    BLOB    NOT NULL CHECK (length(last_hash) = 32),
    last_time_us INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_head VALUES (1, 0, zeroblob(32), 0);

CREATE TRIGGER ledger_records_no_update BEFORE UPDATE ON ledger_records
BEGIN
    SELECT RAISE(ABORT, 'ledger_records is append-only: UPDATE refused');
END;
CREATE TRIGGER ledger_records_no_delete BEFORE DELETE ON ledger_records
BEGIN
    SELECT RAISE(ABORT, 'ledger_records is append-only: DELETE refused');
END;
CREATE TRIGGER ledger_head_forward BEFORE UPDATE ON ledger_head
WHEN NEW.next_seq < OLD.next_seq
BEGIN
    SELECT RAISE(ABORT, 'ledger_head may not move back');
END;
CREATE TRIGGER ledger_head_kept BEFORE DELETE ON ledger_head
BEGIN
    SELECT RAISE(ABORT, 'ledger_head is append-only: DELETE refused');
END;
