-- The ledger (SPEC section 8). `canonical` holds the exact bytes that were hashed;
-- the other columns are indexes over them, and `vidne verify` checks they agree.
CREATE TABLE ledger_records (
    seq        bigint PRIMARY KEY CHECK (seq >= 0),
    stream     text   NOT NULL,
    stream_seq bigint NOT NULL CHECK (stream_seq >= 1),
    event_type text   NOT NULL,
    time_us    bigint NOT NULL,
    canonical  bytea  NOT NULL,
    hash       bytea  NOT NULL CHECK (octet_length(hash) = 32)
);

-- Optimistic concurrency: a duplicate (stream, stream_seq) can never be stored.
CREATE UNIQUE INDEX ledger_records_stream ON ledger_records (stream, stream_seq);

-- The chain head: writers lock this one row (SELECT ... FOR UPDATE) to serialize appends
-- across processes, so the chain can neither fork nor leave a gap.
CREATE TABLE ledger_head (
    id           smallint PRIMARY KEY CHECK (id = 1),
    next_seq     bigint NOT NULL CHECK (next_seq >= 0),
    last_hash    bytea  NOT NULL CHECK (octet_length(last_hash) = 32),
    last_time_us bigint NOT NULL
);
INSERT INTO ledger_head VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_records_append_only
    BEFORE UPDATE OR DELETE ON ledger_records
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_records_no_truncate
    BEFORE TRUNCATE ON ledger_records
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The head only moves forward and is never removed.
CREATE FUNCTION ledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.next_seq < OLD.next_seq THEN
        RAISE EXCEPTION 'ledger_head may not move back' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_head_forward
    BEFORE UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_head_forward_only();
CREATE TRIGGER ledger_head_kept
    BEFORE DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_head_no_truncate
    BEFORE TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
