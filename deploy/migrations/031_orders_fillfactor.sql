-- 031_orders_fillfactor: room in each page of orders for a HOT update.
--
-- A status check updates an order twice: the poller's claim sets only
-- lease_owner and lease_until, which no index covers, so PostgreSQL can
-- write the new row version in the same page without touching the six
-- indexes (a heap-only tuple), but only when the page has room. At the
-- default fillfactor of 100 every page of a bulk of orders is full and each
-- claim inserted into every index. Applies to pages written from now on.
ALTER TABLE orders SET (fillfactor = 80);
