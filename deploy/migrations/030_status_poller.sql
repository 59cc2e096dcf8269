-- 030_status_poller: what services/status-poller and services/repo-ingest
-- need beyond 002.
--
-- check_command_id: the id of the last scmflow.order.check_status command
-- for the order, so that the status check it triggers answers with
-- correlationid = that id (scmctl order check waits for it).
ALTER TABLE orders
    ADD COLUMN check_command_id text;

-- The poller's claim: due orders in next_check_at order (orders_due from 002
-- covers it); this one keeps the daily "every open order" update cheap.
CREATE INDEX orders_open_submitted ON orders (id) WHERE state = 'submitted';

-- repo-ingest: attempts at storing a collected chain (not_stored retries).
ALTER TABLE collected_chains
    ADD COLUMN attempts int NOT NULL DEFAULT 0;

CREATE INDEX certificates_active ON certificates (status) WHERE status = 'active';
