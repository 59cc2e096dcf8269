-- 011_catalog_import: per-status totals of an import job (counted once at
-- the start, so a resumed or time-sliced import can fetch several pages of a
-- status in parallel without counting again).
ALTER TABLE catalog_jobs ADD COLUMN status_totals jsonb;
