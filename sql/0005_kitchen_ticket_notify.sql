-- 0005 Wake the daemon: NOTIFY kitchen_ticket_new whenever a ticket becomes printable.
--
-- Channel: kitchen_ticket_new. Payload (JSON text, one notification per ticket):
--   {"ticket_id": 42, "station": "bar", "brand_id": "<uuid>", "store_id": "<uuid>|null",
--    "ticket_type": "order|addition|void|checker", "due_at": "<next_attempt_at, ISO 8601>"}
-- Sent for every ticket inserted with status 'new' and for every status change back to 'new'
-- (retry, manual reset, a DBA's UPDATE). PostgreSQL delivers notifications at COMMIT, in commit
-- order; a rolled-back transaction notifies nobody. A listener that was not connected misses them,
-- so the daemon also looks for due tickets when it (re)connects.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE FUNCTION kprintd.kitchen_ticket_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_ticket_new', json_build_object(
        'ticket_id',   NEW.id,
        'station',     NEW.printer_target,
        'brand_id',    NEW.brand_id,
        'store_id',    NEW.store_id,
        'ticket_type', NEW.ticket_type,
        'due_at',      NEW.next_attempt_at)::text);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_notify() IS
    'AFTER INSERT (status ''new'') and AFTER UPDATE (status changed to ''new'') on kitchen_kitchenticket: '
    'pg_notify(''kitchen_ticket_new'', ''{"ticket_id", "station", "brand_id", "store_id", "ticket_type", "due_at"}''), '
    'delivered at commit. due_at is next_attempt_at: the ticket is not due before it.';

CREATE TRIGGER kitchen_kitchenticket_notify_insert
    AFTER INSERT ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_notify();

CREATE TRIGGER kitchen_kitchenticket_notify_status
    AFTER UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new' AND OLD.status IS DISTINCT FROM 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_notify();
