-- Compliance reports: a projection of the ledger counting, per SP client and UTC day,
-- what `crate::domain::report::tally` says each record adds. It advances one signed
-- checkpoint at a time (its `projection_positions` row is always a checkpoint's tree
-- size), so every report is exactly the records of one named checkpoint.
CREATE TABLE report_daily (
    client_id TEXT   NOT NULL,
    day       TEXT   NOT NULL,
    metric    TEXT   NOT NULL,
    key       TEXT   NOT NULL,
    count     BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (client_id, day, metric, key)
);
CREATE INDEX report_daily_day ON report_daily (day);
