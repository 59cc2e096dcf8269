-- 010_catalog_jobs: durable work of catalog-sync (catalog syncs and order
-- imports). A command handler or the weekly schedule only inserts a job;
-- the job runner claims it with FOR UPDATE SKIP LOCKED and a lease, talks to
-- SCM outside any transaction and records the result (and its events) in a
-- new transaction. A failed attempt is retried at next_attempt_at (backoff);
-- an import also records its position after every page, so a killed worker
-- resumes where it stopped instead of starting over.
CREATE TABLE catalog_jobs (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('sync', 'import')),
    account          text NOT NULL REFERENCES scm_accounts(name) ON DELETE CASCADE,
    trigger          text NOT NULL CHECK (trigger IN ('schedule', 'command')),
    command_id       text,                 -- correlation id of the answering events
    params           jsonb NOT NULL DEFAULT '{}',  -- sync: {"scope":[..]}; import: {"status":[..]}
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_until      timestamptz,
    -- import position: index into the list of statuses being imported and
    -- the page offset inside that status
    status_idx       int NOT NULL DEFAULT 0,
    position         int NOT NULL DEFAULT 0,
    total            bigint,
    done             bigint NOT NULL DEFAULT 0,
    counts           jsonb NOT NULL DEFAULT '{}',
    last_error       text,
    sync_id          bigint REFERENCES catalog_syncs(id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- One job per command (a redelivered command finds its job).
CREATE UNIQUE INDEX catalog_jobs_command ON catalog_jobs (kind, command_id) WHERE command_id IS NOT NULL;
CREATE INDEX catalog_jobs_due ON catalog_jobs (next_attempt_at) WHERE state IN ('pending', 'running');
