-- A writer may send a group sealed on the head that its group still in flight will leave
-- (docs/ledger.md, "How concurrent writers are serialized"). The group's records are
-- inserted first and the head is moved last, once that group has committed; if the head
-- is then not the one the group was sealed on, the update sets next_seq to NULL, and this
-- trigger refuses it with 40001, rolling the statement back with the records it inserted.
-- (A function call in the update itself made every append slower, even uncalled.)
CREATE OR REPLACE FUNCTION ledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.next_seq IS NULL THEN
        RAISE EXCEPTION 'ledger_head moved: the group was sealed on another head'
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF NEW.next_seq < OLD.next_seq THEN
        RAISE EXCEPTION 'ledger_head may not move back' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
