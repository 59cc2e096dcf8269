-- 020_order_submitter: what services/order-submitter needs beyond 002.
--
-- scm_operations rows are the durable work queue of the submitter: the
-- command handler inserts the intent (state 'intent'), the submit task
-- claims due rows with FOR UPDATE SKIP LOCKED and a lease, calls SCM outside
-- any transaction and records the outcome. call_started is set in the claim
-- transaction BEFORE the SCM call: a row claimed again with call_started
-- still true may already have reached SCM (crash, timeout, reset), so it is
-- reconciled with SCM before any new call.
ALTER TABLE scm_operations
    ADD COLUMN next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_owner        text,
    ADD COLUMN lease_until        timestamptz,
    ADD COLUMN call_started       boolean NOT NULL DEFAULT false,
    ADD COLUMN csr_pem            text,        -- CSR for this operation (BYO or generated)
    ADD COLUMN private_key_sealed text,        -- sf_seal token, aad "order:<order_id>:key"
    ADD COLUMN last_error         jsonb,
    ADD COLUMN updated_at         timestamptz NOT NULL DEFAULT now();

CREATE INDEX scm_operations_due ON scm_operations (next_attempt_at)
    WHERE state IN ('intent', 'unknown');

-- One enrollment per order, ever: a second enroll intent for the same order
-- cannot be recorded (belt and braces behind the handler's check).
CREATE UNIQUE INDEX scm_operations_one_enroll ON scm_operations (order_id)
    WHERE kind = 'enroll';

-- At most one open SCM operation per order at a time.
CREATE UNIQUE INDEX scm_operations_one_open ON scm_operations (order_id)
    WHERE state IN ('intent', 'unknown');
