-- The Merkle tree (SPEC section 4), stored as C2SP tlog-tiles are: tile level 0 is
-- ledger_records.hash; level L >= 1 holds the hash of every complete subtree of height
-- 8L, written in the same transaction as the record that completes it.
CREATE TABLE merkle_hashes (
    level smallint NOT NULL CHECK (level >= 1),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TRIGGER merkle_hashes_append_only
    BEFORE UPDATE OR DELETE ON merkle_hashes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER merkle_hashes_no_truncate
    BEFORE TRUNCATE ON merkle_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The tree's right edge (one hash per set bit of tree_size), moved with the chain head
-- under its lock. tree_size equals next_seq once `vidne migrate` has built the tree of
-- a ledger that predates it.
ALTER TABLE ledger_head ADD COLUMN tree_size bigint NOT NULL DEFAULT 0 CHECK (tree_size >= 0);
ALTER TABLE ledger_head ADD COLUMN tree_frontier bytea NOT NULL DEFAULT '\x';

-- Signed checkpoints (SPEC section 5), each checked consistent with the one before it
-- before it was signed.
CREATE TABLE log_checkpoints (
    tree_size  bigint PRIMARY KEY CHECK (tree_size >= 0),
    root       bytea  NOT NULL CHECK (octet_length(root) = 32),
    note       text   NOT NULL,
    created_us bigint NOT NULL
);
CREATE TRIGGER log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER log_checkpoints_no_truncate
    BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The origin and verifier key the ledger's first checkpoint was signed as: neither ever
-- changes, so a service configured otherwise refuses to start.
CREATE TABLE log_identity (
    id           smallint PRIMARY KEY CHECK (id = 1),
    origin       text NOT NULL,
    verifier_key text NOT NULL
);
CREATE TRIGGER log_identity_fixed
    BEFORE UPDATE OR DELETE ON log_identity
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER log_identity_no_truncate
    BEFORE TRUNCATE ON log_identity
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
