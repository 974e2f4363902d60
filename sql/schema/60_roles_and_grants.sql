-- Roles: who may do what to the kitchen's tables, and who owns them; the grants by duty; the
-- search_path every function resolves names with.
--
-- Five NOLOGIN group roles, one per duty. A login gets a duty with one GRANT, e.g.
--   CREATE ROLE kprintd LOGIN PASSWORD '...' IN ROLE kprintd_daemon;   -- the daemon's login
--   GRANT kprintd_pos TO pos_app;                                      -- the POS's login
--
--   kprintd_owner    owns kprintd's objects and the audit log; nobody logs in as it. The SECURITY
--                    DEFINER functions (the log writers, the admin actions, kitchen_purge) run as it.
--   kprintd_daemon   `kprintd run`: claims and prints tickets, records outcomes, health, alerts.
--   kprintd_pos      the POS: kitchen_create_tickets(), or writing tickets, their lines and its own
--                    'created' log rows itself (the spec's Example 1); reads bill and ticket status.
--   kprintd_manager  admin actions (kitchen_reprint, kitchen_reset_ticket, kitchen_mark_printed,
--                    kitchen_mark_failed, kitchen_purge): EXECUTE only, no table rights.
--   kprintd_auditor  reads the views, the tickets and the logs; writes nothing.
--
-- The audit settings kprintd.action / kprintd.actor describe a status change only for the daemon
-- and managers (through the admin functions); anyone else's change is logged as manual_update by
-- who they are (kitchen_ticket_audit, in 30_triggers.sql). docs/security.md says what each role can and
-- cannot do, and what an owner or superuser still can.
--
-- Creating roles needs CREATEROLE (or a superuser): migrate as such a login, or have a DBA create
-- the five roles first; the statements below then only grant.
--


-- 1. The roles (cluster-wide: a second database on the server finds them there) --------------------
DO $roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['kprintd_owner', 'kprintd_daemon', 'kprintd_pos', 'kprintd_manager',
                                  'kprintd_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
    END LOOP;
END
$roles$;

-- 2. Ownership -------------------------------------------------------------------------------------
-- kprintd's objects go to kprintd_owner. A kitchen table the POS made (another role owns it) stays
-- the POS's, except the audit log: no login may own it, since an owner can disable its triggers. The
-- POS keeps reading and appending to it.
DO $owner$
DECLARE
    v_object record;
    v_owner  text;
BEGIN
    FOR v_object IN
        SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner
          FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'v', 'p')
           AND c.relname LIKE 'kitchen\_%'
    LOOP
        IF v_object.owner = 'kprintd_owner' THEN
            CONTINUE;
        ELSIF v_object.owner = current_user OR v_object.relname = 'kitchen_kitchenticketlog' THEN
            IF v_object.owner <> current_user THEN
                EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', v_object.relname, v_object.owner);
            END IF;
            EXECUTE format('ALTER %s %I OWNER TO kprintd_owner',
                           CASE v_object.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
                           v_object.relname);
        ELSE
            -- The POS's table: kprintd's functions and triggers work on it with the owner's grant.
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES, TRIGGER ON %I TO kprintd_owner',
                           v_object.relname);
        END IF;
    END LOOP;

    FOR v_object IN
        SELECT p.oid::regprocedure AS signature, p.prokind
          FROM pg_proc p
         WHERE p.pronamespace = 'kprintd'::regnamespace AND p.proname LIKE 'kitchen\_%'
           AND pg_get_userbyid(p.proowner) <> 'kprintd_owner'
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO kprintd_owner',
                       CASE v_object.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                       v_object.signature);
    END LOOP;

    -- The seam's views read the POS's tables with their owner's rights.
    FOREACH v_owner IN ARRAY ARRAY['pos_bill', 'pos_billitem', 'core_product', 'core_brand',
                                   'tables_table'] LOOP
        IF to_regclass(v_owner) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I TO kprintd_owner', v_owner);
        END IF;
    END LOOP;
END
$owner$;

-- The schema of kprintd's functions: only its owner creates in it; everyone may look up names in it
-- (a function's EXECUTE grant still decides who calls it).
ALTER SCHEMA kprintd OWNER TO kprintd_owner;
REVOKE CREATE ON SCHEMA kprintd FROM PUBLIC;
GRANT USAGE ON SCHEMA kprintd TO PUBLIC;

-- A POS or a DBA calls kitchen_create_tickets(), kitchen_reprint(), ... by their plain names: the
-- database's sessions find kprintd's schema after their own. Where the database already sets a
-- search_path, kprintd leaves it alone and says so.
DO $path$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_db_role_setting s
                WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND s.setrole = 0
                  AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'search\_path=%')) THEN
        RAISE NOTICE 'this database sets its own search_path: add kprintd to it to call kprintd''s '
                     'functions without the kprintd. prefix';
    ELSE
        EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, kprintd',
                       current_database());
    END IF;
END
$path$;

-- 3. What nobody gets by default ---------------------------------------------------------------------
-- Functions are executable by PUBLIC unless revoked: the ones that change the kitchen are revoked
-- and granted by duty below. Functions that only read (reports, routing, documents) stay public:
-- they run with the caller's rights, so what they show is bounded by the caller's SELECT grants.
-- The listings of `kprintd tickets` are granted with it, to managers and auditors, whatever rights
-- they run with.
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reprint(bigint, text, bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reset_ticket(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_mark_printed(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_mark_failed(bigint, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_finish_print_jobs(text, jsonb, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reclaim_expired_leases(uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_install_required_fillers() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_log_created(public.kitchen_kitchenticket, text, jsonb, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_admin_lock_ticket(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_admin_check_args(text, bigint, text) FROM PUBLIC;

-- 4. Grants by duty ----------------------------------------------------------------------------------
-- Any kitchen view or table may be read by the daemon and the auditor (and so the reports, which
-- read across them); writes are listed one by one.
DO $grants$
DECLARE
    v_relation text;
BEGIN
    FOR v_relation IN
        SELECT c.relname FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p')
           AND (c.relname LIKE 'kitchen\_%' OR c.relname = 'kprintd_schema_migrations')
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO kprintd_daemon, kprintd_auditor', v_relation);
    END LOOP;
END
$grants$;

-- The daemon's calls: claims and outcomes, health checks, heartbeat, alerts, retention.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_finish_print_jobs(text, jsonb, jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reclaim_expired_leases(uuid[], uuid) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) TO kprintd_daemon;
-- The admin actions run with the owner's rights (SECURITY DEFINER): a manager needs EXECUTE, no
-- table rights.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reprint(bigint, text, bigint[]) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reset_ticket(bigint, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_mark_printed(bigint, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_mark_failed(bigint, text, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) TO kprintd_manager;
-- The ticket listings of `kprintd tickets`: kitchen_ticket_list (SECURITY DEFINER), and the failed,
-- stuck and bill listings, which read the views with the caller's rights (the views' SELECT grants
-- below and in the loop above).
GRANT EXECUTE ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) TO kprintd_manager, kprintd_auditor;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) TO kprintd_manager, kprintd_auditor;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) TO kprintd_manager, kprintd_auditor;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) TO kprintd_manager, kprintd_auditor;
-- Send to kitchen.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) TO kprintd_pos;

-- The daemon: claims and outcomes (tickets, printer counters), health checks, heartbeat, alerts.
GRANT UPDATE ON public.kitchen_kitchenticket, public.kitchen_stationprinter TO kprintd_daemon;
-- Pruning picks the rows it deletes FOR UPDATE, which needs UPDATE.
GRANT INSERT, UPDATE, DELETE ON public.kitchen_printerhealthcheck TO kprintd_daemon;
GRANT INSERT, UPDATE, DELETE ON public.kitchen_daemon_heartbeat TO kprintd_daemon;
GRANT INSERT ON public.kitchen_alertlog TO kprintd_daemon;
-- The POS: tickets and lines it writes, its own 'created' rows, and what it shows on its screens.
GRANT SELECT, INSERT ON public.kitchen_kitchenticket, public.kitchen_kitchenticketitem TO kprintd_pos;
GRANT SELECT, INSERT ON public.kitchen_kitchenticketlog TO kprintd_pos;
GRANT SELECT ON public.kitchen_stationprinter, public.kitchen_bill_status, public.kitchen_billitem_status,
                public.kitchen_pos_bill, public.kitchen_pos_billitem TO kprintd_pos;
-- Where kprintd made the POS's reference tables (a fresh install, the demo), the POS gets them as
-- its own; a POS that made them keeps its own rights and kprintd grants nothing on them.
DO $pos_tables$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['core_brand', 'core_product', 'pos_bill', 'pos_billitem'] LOOP
        IF to_regclass('public.' || v_table) IS NOT NULL
           AND pg_get_userbyid((SELECT relowner FROM pg_class
                                 WHERE oid = to_regclass('public.' || v_table))) = current_user THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO kprintd_pos', v_table);
            IF pg_get_serial_sequence('public.' || v_table, 'id') IS NOT NULL THEN
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO kprintd_pos',
                               pg_get_serial_sequence('public.' || v_table, 'id'));
            END IF;
        END IF;
    END LOOP;
END
$pos_tables$;

-- Managers and auditors read the reports.
GRANT SELECT ON public.kitchen_kitchenticket, public.kitchen_bill_status, public.kitchen_failed_tickets,
                public.kitchen_stuck_tickets, public.kitchen_printer_status, public.kitchen_station_queue,
                public.kitchen_daemon_status TO kprintd_manager;

-- Ids of rows each writer inserts.
DO $sequences$
DECLARE
    v_grant record;
BEGIN
    FOR v_grant IN
        SELECT pg_get_serial_sequence(t.relname, 'id') AS sequence, t.grantee
          FROM (VALUES ('kitchen_kitchenticket', 'kprintd_pos'), ('kitchen_kitchenticketitem', 'kprintd_pos'),
                       ('kitchen_kitchenticketlog', 'kprintd_pos'),
                       ('kitchen_printerhealthcheck', 'kprintd_daemon'),
                       ('kitchen_alertlog', 'kprintd_daemon')) AS t(relname, grantee)
    LOOP
        IF v_grant.sequence IS NOT NULL THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', v_grant.sequence, v_grant.grantee);
        END IF;
    END LOOP;
END
$sequences$;

-- 5. Every function resolves names the same way, whoever calls it ----------------------------------
-- Every name a function uses is qualified (kprintd.f(), public.t); its search_path holds only
-- pg_catalog, for the built-ins, and pg_temp, last: a caller's temporary table named like a kitchen
-- table is never found, and a function or operator in public never stands in for a built-in.
-- SQL-standard bodies (RETURN ..., BEGIN ATOMIC) bind their names when created and need no pinning,
-- and stay inlinable.
DO $pin$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = 'kprintd'::regnamespace AND p.proname LIKE 'kitchen\_%'
           AND p.prokind = 'f' AND p.prosqlbody IS NULL
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_function);
    END LOOP;
END
$pin$;
