-- 032_orders_check_requested: the poller claims the orders whose check was
-- asked for (scmctl order check ID, check_requested) before the rest of
-- what is due, so that such a check is answered in seconds even while a
-- daily cycle of every open order is under way. Few orders are requested at
-- a time: a partial index keeps finding them cheap.
CREATE INDEX orders_check_requested ON orders (next_check_at) WHERE check_requested;
