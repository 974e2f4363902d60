-- The example queries of KITCHEN_PRINTER_DATABASE_SCHEMA.md (version 1.0), copied verbatim:
-- every SELECT and UPDATE of the spec's sql blocks, in the spec's order, with the comments that
-- stand next to them in the same block. POS systems and DBAs run these against our schema, so
-- tests/test_spec_queries.py runs each one unchanged and checks its results. Do not edit a query
-- here: if one stops working, the schema broke the spec. Each query follows a '-- name:' line.

-- name: pending_tickets
SELECT * FROM kitchen_kitchenticket
WHERE status = 'new'
  AND print_attempts < max_retries
ORDER BY created_at ASC
LIMIT 10;

-- name: ticket_items
SELECT 
    kti.quantity,
    bi.product_id,
    p.name AS product_name,
    bi.notes,
    bi.modifiers
FROM kitchen_kitchenticketitem kti
JOIN pos_billitem bi ON kti.bill_item_id = bi.id
JOIN core_product p ON bi.product_id = p.id
WHERE kti.kitchen_ticket_id = 123;

-- name: ticket_failure_log
-- Debug: Why did ticket fail?
SELECT * FROM kitchen_kitchenticketlog
WHERE ticket_id = 123
ORDER BY timestamp;

-- name: avg_print_time
-- SLA: Average print time
SELECT AVG(duration_ms) AS avg_print_time_ms
FROM kitchen_kitchenticketlog
WHERE action = 'print_success'
  AND timestamp > NOW() - INTERVAL '1 day';

-- name: manual_resets_today
-- Audit: Who reprinted tickets today?
SELECT ticket_id, actor, timestamp
FROM kitchen_kitchenticketlog
WHERE action = 'manual_reset'
  AND timestamp::date = CURRENT_DATE;

-- name: latest_printer_status
-- Get latest status for all printers
SELECT DISTINCT ON (printer_id)
    printer_id,
    is_online,
    response_time_ms,
    paper_status,
    checked_at
FROM kitchen_printerhealthcheck
ORDER BY printer_id, checked_at DESC;

-- name: printers_offline
-- Find printers offline for >5 minutes
SELECT 
    sp.station_code,
    sp.printer_name,
    sp.printer_ip,
    phc.checked_at,
    NOW() - phc.checked_at AS downtime
FROM kitchen_printerhealthcheck phc
JOIN kitchen_stationprinter sp ON phc.printer_id = sp.id
WHERE phc.is_online = FALSE
  AND phc.checked_at > NOW() - INTERVAL '10 minutes'
  AND NOT EXISTS (
      SELECT 1 FROM kitchen_printerhealthcheck phc2
      WHERE phc2.printer_id = phc.printer_id
        AND phc2.is_online = TRUE
        AND phc2.checked_at > phc.checked_at
  );

-- name: uptime_report
-- Uptime report (last 7 days)
SELECT 
    sp.station_code,
    sp.printer_name,
    COUNT(*) AS total_checks,
    SUM(CASE WHEN is_online THEN 1 ELSE 0 END) AS online_checks,
    ROUND(100.0 * SUM(CASE WHEN is_online THEN 1 ELSE 0 END) / COUNT(*), 2) AS uptime_percent
FROM kitchen_printerhealthcheck phc
JOIN kitchen_stationprinter sp ON phc.printer_id = sp.id
WHERE checked_at > NOW() - INTERVAL '7 days'
GROUP BY sp.id, sp.station_code, sp.printer_name;

-- name: poll_pending_tickets
SELECT * FROM kitchen_kitchenticket
WHERE status = 'new' 
ORDER BY created_at 
LIMIT 10;
-- Uses: idx_status_created

-- name: station_printers
SELECT * FROM kitchen_stationprinter
WHERE station_code = 'kitchen' 
  AND is_active = true
ORDER BY priority;
-- Uses: idx_station_code_active_priority

-- name: ticket_history
SELECT * FROM kitchen_kitchenticketlog
WHERE ticket_id = 123
ORDER BY timestamp DESC;
-- Uses: idx_ticket_timestamp

-- name: latest_printer_health
SELECT DISTINCT ON (printer_id) *
FROM kitchen_printerhealthcheck
ORDER BY printer_id, checked_at DESC;
-- Uses: idx_printer_checked

-- name: stuck_tickets
-- Find stuck tickets (printing > 5 minutes)
SELECT * FROM kitchen_kitchenticket
WHERE status = 'printing'
  AND created_at < NOW() - INTERVAL '5 minutes';

-- name: reset_stuck_tickets
-- Reset to NEW for retry
UPDATE kitchen_kitchenticket
SET status = 'new', printer_ip = NULL
WHERE status = 'printing'
  AND created_at < NOW() - INTERVAL '5 minutes';

-- name: tickets_for_offline_printer
-- Find tickets for offline printer
SELECT kt.* 
FROM kitchen_kitchenticket kt
JOIN kitchen_stationprinter sp ON kt.printer_target = sp.station_code
WHERE kt.status = 'new'
  AND sp.is_active = FALSE;

-- Option 1: Wait for admin to fix printer
-- Option 2: Reroute to backup printer (manual intervention)

-- name: failure_rate
-- Get failure rate per printer
SELECT 
    sp.printer_name,
    sp.total_prints,
    sp.failed_prints,
    ROUND(100.0 * sp.failed_prints / NULLIF(sp.total_prints, 0), 2) AS failure_rate
FROM kitchen_stationprinter sp
WHERE sp.total_prints > 0
ORDER BY failure_rate DESC;
