-- The compliance reports read each checkpoint's records with their clients, by `seq`
-- range. audit_clients had no index that leads with `seq`, so each page of 5,000
-- records read all of it (2 s a page at 10,000,000 records on PostgreSQL, `vidne bench
-- audit`): the reports' catch-up grew with the square of the ledger.
CREATE INDEX audit_clients_seq ON audit_clients (seq);
