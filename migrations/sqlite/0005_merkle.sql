-- The Merkle tree (SPEC section 4), stored as C2SP tlog-tiles are: tile level 0 is
-- ledger_records.hash; level L >= 1 holds the hash of every complete subtree of height
-- 8L, written in the same transaction as the record that completes it.
CREATE TABLE merkle_hashes (
    level INTEGER NOT NULL CHECK (level >= 1),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER merkle_hashes_no_update BEFORE UPDATE ON merkle_hashes
BEGIN
    SELECT RAISE(ABORT, 'merkle_hashes is append-only: UPDATE refused');
END;
CREATE TRIGGER merkle_hashes_no_delete BEFORE DELETE ON merkle_hashes
BEGIN
    SELECT RAISE(ABORT, 'merkle_hashes is append-only: DELETE refused');
END;

-- The tree's right edge (one hash per set bit of tree_size), moved with the chain head
-- under its lock. tree_size equals next_seq once `vidne migrate` has built the tree of
-- a ledger that predates it.
ALTER TABLE ledger_head ADD COLUMN tree_size INTEGER NOT NULL DEFAULT 0 CHECK (tree_size >= 0);
ALTER TABLE ledger_head ADD COLUMN tree_frontier BLOB NOT NULL DEFAULT x'';

-- Signed checkpoints (SPEC section 5), each checked consistent with the one before it
-- before it was signed.
CREATE TABLE log_checkpoints (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL,
    created_us INTEGER NOT NULL
) STRICT;
CREATE TRIGGER log_checkpoints_no_update BEFORE UPDATE ON log_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'log_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER log_checkpoints_no_delete BEFORE DELETE ON log_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'log_checkpoints is append-only: DELETE refused');
END;

-- The origin and verifier key the ledger's first checkpoint was signed as: neither ever
-- changes, so a service configured otherwise refuses to start.
CREATE TABLE log_identity (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    origin       TEXT NOT NULL,
    verifier_key TEXT NOT NULL
) STRICT;
CREATE TRIGGER log_identity_no_update BEFORE UPDATE ON log_identity
BEGIN
    SELECT RAISE(ABORT, 'log_identity is fixed: UPDATE refused');
END;
CREATE TRIGGER log_identity_no_delete BEFORE DELETE ON log_identity
BEGIN
    SELECT RAISE(ABORT, 'log_identity is fixed: DELETE refused');
END;
