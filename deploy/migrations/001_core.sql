-- 001_core: infrastructure tables every worker uses through common/sf_db.c.
-- (schema_migrations itself is created by sf_db_migrate before any migration.)

-- Inbox: one row per consumed message, inserted in the same transaction as
-- the work it caused, so a redelivered message is recognised and skipped.
CREATE TABLE inbox (
    consumer      text NOT NULL,
    message_id    text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
-- Cleanup of old rows (sf_db_inbox_cleanup) scans by age.
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Outbox: messages written in the handler's transaction, published by the
-- relay (ascending id) and marked sent after the broker acknowledged them.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    msg_key     text,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
-- The relay only ever looks at unsent rows; keep that lookup small however
-- many sent rows are waiting for cleanup.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
-- Cleanup of sent rows by age.
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Schedules: periodic work that fires once across replicas. The next run
-- time lives here, not in any replica's memory, so restarts neither skip
-- nor repeat a run.
CREATE TABLE schedules (
    name        text PRIMARY KEY,
    next_run    timestamptz NOT NULL,
    last_run    timestamptz,
    last_owner  text
);
