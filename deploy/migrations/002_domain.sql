-- 002_domain: the domain model shared by every worker.
-- Conventions: the SCM account is named by scm_accounts.name; SCM ids are
-- bigint; everything SCM sends is also kept raw (jsonb) for audit and for
-- fields we do not model yet. Secrets are sf_seal tokens ("v1.<keyid>.<b64>")
-- in *_sealed columns, never plain.

CREATE TABLE scm_accounts (
    name             text PRIMARY KEY,
    base_url         text NOT NULL,
    login            text NOT NULL,
    customer_uri     text NOT NULL,
    password_sealed  text NOT NULL,
    auth_mode        text NOT NULL DEFAULT 'password' CHECK (auth_mode IN ('password', 'client_cert')),
    is_default       boolean NOT NULL DEFAULT false,
    is_mrao          boolean,
    roles            text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- At most one default account.
CREATE UNIQUE INDEX scm_accounts_one_default ON scm_accounts (is_default) WHERE is_default;

-- Catalog mirror. status: 'active' or 'removed' (gone from SCM; kept because
-- orders refer to it).
CREATE TABLE catalog_organizations (
    account         text NOT NULL REFERENCES scm_accounts(name) ON DELETE CASCADE,
    id              bigint NOT NULL,
    parent_id       bigint,               -- set for departments
    name            text NOT NULL,
    cert_types      text[] NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
    raw             jsonb,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_synced_at  timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz,
    PRIMARY KEY (account, id)
);
CREATE INDEX catalog_organizations_name ON catalog_organizations (account, lower(name));

CREATE TABLE catalog_domains (
    account            text NOT NULL REFERENCES scm_accounts(name) ON DELETE CASCADE,
    id                 bigint NOT NULL,
    name               text NOT NULL,
    state              text,               -- ACTIVE | SUSPENDED
    delegation_status  text,               -- ACTIVE | REQUESTED | ...
    validation_status  text,               -- VALIDATED | NOT_VALIDATED | EXPIRED
    validation_method  text,
    dcv_validation     date,
    dcv_expiration     date,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
    raw                jsonb,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_synced_at     timestamptz NOT NULL DEFAULT now(),
    removed_at         timestamptz,
    PRIMARY KEY (account, id)
);
CREATE INDEX catalog_domains_name ON catalog_domains (account, lower(name));

CREATE TABLE catalog_domain_delegations (
    account      text NOT NULL,
    domain_id    bigint NOT NULL,
    org_id       bigint NOT NULL,
    cert_types   text[] NOT NULL DEFAULT '{}',   -- SSL, SMIME, CodeSign
    privileges   text[] NOT NULL DEFAULT '{}',   -- DOMAIN, SUBDOMAIN, WILDCARD_1ST_LEVEL, ...
    status       text,                            -- ACTIVE | REQUESTED
    PRIMARY KEY (account, domain_id, org_id),
    FOREIGN KEY (account, domain_id) REFERENCES catalog_domains(account, id) ON DELETE CASCADE
);

CREATE TABLE catalog_profiles (
    account                 text NOT NULL REFERENCES scm_accounts(name) ON DELETE CASCADE,
    id                      bigint NOT NULL,
    name                    text NOT NULL,
    description             text,
    terms                   int[] NOT NULL DEFAULT '{}',
    key_types               jsonb NOT NULL DEFAULT '{}',   -- {"RSA":["2048",...],"EC":["P-256",...]}
    use_secondary_org_name  boolean NOT NULL DEFAULT false,
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
    raw                     jsonb,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at          timestamptz NOT NULL DEFAULT now(),
    removed_at              timestamptz,
    PRIMARY KEY (account, id)
);

-- Which organizations (or departments) may use which profile
-- (GET /ssl/v1/types?organizationId=).
CREATE TABLE catalog_profile_orgs (
    account     text NOT NULL,
    profile_id  bigint NOT NULL,
    org_id      bigint NOT NULL,
    PRIMARY KEY (account, profile_id, org_id)
);

CREATE TABLE catalog_custom_fields (
    account         text NOT NULL REFERENCES scm_accounts(name) ON DELETE CASCADE,
    id              bigint NOT NULL,
    name            text NOT NULL,
    mandatory       boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
    last_synced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, id)
);

CREATE TABLE catalog_syncs (
    id           bigserial PRIMARY KEY,
    account      text NOT NULL,
    scope        text[] NOT NULL,
    trigger      text NOT NULL,         -- schedule | command
    command_id   text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    counts       jsonb,                 -- {"organizations":{"added":..,"changed":..,"removed":..},...}
    error        text
);

-- Orders. id: the client's order id (or the enroll command's event id);
-- imported orders get 'scm:<account>:<sslId>'.
--
-- state is scmflow's lifecycle:
--   accepted        validated and persisted; key + submission pending
--   submitting      intent recorded, SCM call in progress or outcome unknown
--   submitted       SCM accepted it (ssl_id known); status polling
--   issued          SCM says Issued; collected chain published for ingestion
--   stored          certificate in the repository
--   not_stored      collected but the license count is reached (kept; stored when raised)
--   rejected        refused by validation before reaching SCM
--   failed          SCM refused or ended it (Declined, Rejected, Invalid, definite error)
--   revoked         revoked in SCM
--   imported        imported from SCM, not (yet) collectable (e.g. Expired, Replaced)
-- scm_status is SCM's own status string (Requested, Applied, Issued, ...).
CREATE TABLE orders (
    id                        text PRIMARY KEY,
    account                   text NOT NULL REFERENCES scm_accounts(name),
    origin                    text NOT NULL CHECK (origin IN ('enroll', 'imported', 'renewal')),
    command_id                text,
    renewed_from              text REFERENCES orders(id) ON DELETE SET NULL,
    state                     text NOT NULL,
    scm_status                text,
    ssl_id                    bigint,
    renew_id                  text,
    common_name               text NOT NULL,
    sans                      text[] NOT NULL DEFAULT '{}',
    org_id                    bigint,
    profile_id                bigint,
    term_days                 int,
    key_algorithm             text,
    key_size                  int,
    keystore_type             text CHECK (keystore_type IN ('PEM', 'PKCS12', 'JKS')),
    keystore_password_sealed  text,
    private_key_sealed        text,
    csr_pem                   text,
    byo_csr                   boolean NOT NULL DEFAULT false,
    comments                  text,
    external_requesters       text[] NOT NULL DEFAULT '{}',
    custom_fields             jsonb,
    correlation_ref           text,           -- put in SCM comments; used to reconcile unknown outcomes
    scm_details               jsonb,          -- last details seen from SCM
    last_error                jsonb,          -- {"code":..,"message":..,"field":..}
    needs_attention           boolean NOT NULL DEFAULT false,
    attention_reason          text,
    -- status polling
    next_check_at             timestamptz,
    check_step                int NOT NULL DEFAULT 0,
    check_requested           boolean NOT NULL DEFAULT false,
    lease_owner               text,
    lease_until               timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    submitted_at              timestamptz,
    issued_at                 timestamptz,
    stored_at                 timestamptz,
    UNIQUE (account, ssl_id)
);
CREATE INDEX orders_due ON orders (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX orders_state ON orders (state);
CREATE INDEX orders_cn ON orders (account, lower(common_name));

CREATE TABLE order_status_history (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    old_state   text,
    new_state   text,
    old_status  text,
    new_status  text,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_history_order ON order_status_history (order_id, id);

-- Every call to SCM that changes something, recorded BEFORE it is made
-- (the intent), so that a crash at any instant can be reconciled with SCM
-- instead of calling again.
CREATE TABLE scm_operations (
    id               bigserial PRIMARY KEY,
    order_id         text NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    command_id       text,
    kind             text NOT NULL CHECK (kind IN ('enroll', 'renew', 'reissue', 'revoke')),
    state            text NOT NULL CHECK (state IN ('intent', 'done', 'unknown', 'failed')),
    correlation_ref  text,
    attempt          int NOT NULL DEFAULT 1,
    request          jsonb,        -- non-secret request summary
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX scm_operations_open ON scm_operations (state) WHERE state IN ('intent', 'unknown');

-- Collected chains waiting for / having gone through ingestion.
CREATE TABLE collected_chains (
    id            bigserial PRIMARY KEY,
    order_id      text NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    ssl_id        bigint,
    format        text NOT NULL,
    chain_pem     text NOT NULL,
    message_id    text UNIQUE,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'stored', 'not_stored', 'rejected')),
    reason        text,
    collected_at  timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX collected_chains_waiting ON collected_chains (state) WHERE state = 'not_stored';

-- The certificate repository.
CREATE TABLE certificates (
    id                    bigserial PRIMARY KEY,
    order_id              text NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    ssl_id                bigint,
    serial                text NOT NULL,
    issuer                text NOT NULL,
    subject               text NOT NULL,
    common_name           text,
    sans                  text[] NOT NULL DEFAULT '{}',
    not_before            timestamptz NOT NULL,
    not_after             timestamptz NOT NULL,
    sha256_fingerprint    text NOT NULL UNIQUE,
    sha1_fingerprint      text NOT NULL,
    key_type              text,
    key_size              int,
    leaf_pem              text NOT NULL,
    chain_pem             text NOT NULL,       -- leaf -> intermediates -> root
    keystore_type         text,
    keystore_sealed       text,                -- sealed keystore bytes (base64 inside the token)
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'superseded', 'expired')),
    renews_certificate_id bigint REFERENCES certificates(id) ON DELETE SET NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_order ON certificates (order_id);
CREATE INDEX certificates_not_after ON certificates (not_after);

-- Singleton settings of the repository (license count).
CREATE TABLE repo_settings (
    id             int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    license_max    bigint NOT NULL DEFAULT 1000000 CHECK (license_max >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO repo_settings (id) VALUES (1);

-- Orders deleted locally (SCM keeps them): remembered so that an import
-- does not bring them back and a replayed delete answers the same.
CREATE TABLE deleted_orders (
    order_id    text PRIMARY KEY,
    account     text NOT NULL,
    ssl_id      bigint,
    command_id  text,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deleted_orders_ssl ON deleted_orders (account, ssl_id);
