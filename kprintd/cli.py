"""The `kprintd` command line: subcommands for migrating, running, inspecting, administering
tickets (kprintd/admin.py) and emulating.

Owns argument parsing, turning configuration, migration and database errors into one clear line
and an exit code (never a traceback), and dispatching to the module that does the work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from kprintd import __version__
from kprintd.config import ConfigError, Settings, load_settings
from kprintd.logs import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# A database that cannot be reached, logged into or read: the code `kprintd status` gives it too.
EXIT_DATABASE = 2


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"kprintd: {message}", file=sys.stderr)
    return code


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.env_file)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _cmd_migrate(args: argparse.Namespace) -> int:
    from kprintd import migrate

    settings = _settings(args)
    directory = Path(args.dir) if args.dir else None
    try:
        if args.status:
            state = migrate.status(settings.database_url, directory)
            for migration, applied_at in state.applied:
                by_hand = "  (by hand: its checksum is recorded at the next migrate)"
                print(
                    f"applied  {migration.filename}  {applied_at}"
                    + (by_hand if migration in state.by_hand else "")
                )
            for migration in state.pending:
                print(f"pending  {migration.filename}")
            return EXIT_OK
        if args.plan:
            steps = migrate.plan(settings.database_url, directory)
            for migration, said in steps:
                print(f"would apply  {migration.filename}")
                for line in said:
                    print(f"    {line}")
            print("nothing was changed" if steps else "schema is up to date")
            return EXIT_OK
        applied = migrate.migrate(settings.database_url, directory)
    except migrate.MigrationError as exc:
        return _fail(str(exc))
    for migration in applied:
        print(f"applied  {migration.filename}")
    if not applied:
        print("schema is up to date")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from kprintd import daemon

    try:
        return daemon.run(_settings(args))
    except daemon.CannotRun as exc:
        return _fail(f"cannot run: {exc}", EXIT_DATABASE)


def _cmd_status(args: argparse.Namespace) -> int:
    from kprintd import monitor

    return monitor.status(_settings(args), args.json)


def _cmd_alerts(args: argparse.Namespace) -> int:
    from kprintd import monitor

    return monitor.alerts(_settings(args), args.json, args.count, args.timeout, since_s=args.since)


def _cmd_tickets(args: argparse.Namespace) -> int:
    from kprintd import admin

    return admin.tickets(
        _settings(args),
        failed=args.failed,
        stuck=args.stuck,
        bill=args.bill,
        limit=args.limit,
        as_json=args.json,
    )


def _cmd_reprint(args: argparse.Namespace) -> int:
    from kprintd import admin

    return admin.reprint(_settings(args), args.ticket_id, args.actor, args.items, as_json=args.json)


def _cmd_reset(args: argparse.Namespace) -> int:
    from kprintd import admin

    return admin.reset(_settings(args), args.ticket_id, args.actor, as_json=args.json)


def _cmd_mark_printed(args: argparse.Namespace) -> int:
    from kprintd import admin

    return admin.mark_printed(_settings(args), args.ticket_id, args.actor, as_json=args.json)


def _cmd_mark_failed(args: argparse.Namespace) -> int:
    from kprintd import admin

    return admin.mark_failed(
        _settings(args), args.ticket_id, args.actor, args.reason, as_json=args.json
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """'90s', '30m', '2h', '1d' (or plain seconds) as seconds."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _DURATION_UNITS else text
    try:
        value = float(number) * _DURATION_UNITS.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (say 90s, 30m, 2h or 1d)"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


_BIGINT_MAX = 2**63 - 1


def _id(text: str) -> int:
    """A ticket or bill item id: a whole number from 1 to 2^63-1 (a bigint)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text!r}") from None
    if not 1 <= value <= _BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"not an id: {text} (ids are 1 to {_BIGINT_MAX})")
    return value


def _listing_limit(text: str) -> int:
    value = _positive_int(text)
    if value > 10_000:
        raise argparse.ArgumentTypeError(f"at most 10000, got {value}")
    return value


def _not_blank(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be blank")
    return text.strip()


def _add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """tickets, reprint, reset, mark-printed, mark-failed (kprintd/admin.py, docs/admin-cli.md)."""
    tickets_parser = commands.add_parser(
        "tickets",
        help="list tickets: the last ones, the failed, the stuck, or those of one bill",
    )
    which = tickets_parser.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="tickets that failed for good")
    which.add_argument(
        "--stuck", action="store_true", help="tickets that should have printed by now"
    )
    which.add_argument(
        "--bill", metavar="NUMBER_OR_ID", help="every ticket of the bill with this number or id"
    )
    tickets_parser.add_argument(
        "--limit",
        type=_listing_limit,
        default=20,
        metavar="N",
        help="show the last N (default 20; not with --bill, which shows all)",
    )
    tickets_parser.add_argument("--json", action="store_true", help="the list as JSON")
    tickets_parser.set_defaults(handler=_cmd_tickets)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("ticket_id", type=_id, metavar="TICKET_ID")
        parser.add_argument(
            "--actor",
            required=True,
            type=_not_blank,
            metavar="WHO",
            help="who does it, for the audit trail, e.g. manager:sari (required)",
        )
        parser.add_argument("--json", action="store_true", help="the outcome as JSON")
        return parser

    reprint_parser = action(
        "reprint", "print a printed or failed ticket again, marked REPRINT (a new ticket)"
    )
    reprint_parser.add_argument(
        "--items",
        nargs="+",
        type=_id,
        metavar="ITEM_ID",
        help="only these items (pos_billitem ids, as `kprintd tickets --bill` lists them)",
    )
    reprint_parser.set_defaults(handler=_cmd_reprint)
    action("reset", "put a failed or stuck ticket back in the queue").set_defaults(
        handler=_cmd_reset
    )
    action("mark-printed", "record that the kitchen has a ticket; it will not print").set_defaults(
        handler=_cmd_mark_printed
    )
    mark_failed_parser = action("mark-failed", "give up on a waiting or printing ticket")
    mark_failed_parser.add_argument(
        "--reason",
        required=True,
        type=_not_blank,
        help="why, kept as the ticket's error message (required)",
    )
    mark_failed_parser.set_defaults(handler=_cmd_mark_failed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kprintd", description="Kitchen printer daemon: the database is the API."
    )
    parser.add_argument("--version", action="version", version=f"kprintd {__version__}")
    parser.add_argument(
        "--env-file", help="read KPRINTD_* settings from this file (default: KPRINTD_ENV_FILE)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate_parser = commands.add_parser(
        "migrate", help="apply the SQL migrations (sql/migrations)"
    )
    migrate_parser.add_argument("--status", action="store_true", help="list applied and pending")
    migrate_parser.add_argument(
        "--plan",
        action="store_true",
        help="show what migrate would do (tables adopted, columns added) and change nothing",
    )
    migrate_parser.add_argument("--dir", help="migrations directory (default: the bundled ones)")
    migrate_parser.set_defaults(handler=_cmd_migrate)

    run_parser = commands.add_parser("run", help="run the printer daemon (what systemd starts)")
    run_parser.set_defaults(handler=_cmd_run)

    status_parser = commands.add_parser(
        "status",
        help="one screen: printers, queues, failed and stuck tickets, daemons"
        " (exit 1: needs attention, 2: database unreachable)",
    )
    status_parser.add_argument("--json", action="store_true", help="the report as JSON")
    status_parser.set_defaults(handler=_cmd_status)

    alerts_parser = commands.add_parser(
        "alerts", help="print alerts (NOTIFY kitchen_alert) as they come, until Ctrl-C"
    )
    alerts_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts_parser.add_argument(
        "--count", type=_positive_int, metavar="N", help="exit after N alerts"
    )
    alerts_parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="exit after S seconds (exit 1 if --count alerts did not come by then)",
    )
    alerts_parser.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="first print the alerts of the last DURATION (90s, 30m, 2h, 1d) from kitchen_alertlog",
    )
    alerts_parser.set_defaults(handler=_cmd_alerts)

    _add_admin_commands(commands)

    # Listed for --help only: main() hands `kprintd emulator ...` to the emulator's own parser.
    commands.add_parser("emulator", help="run emulated ESC/POS network printers on loopback")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["emulator"]:
        from kprintd import emulator

        return emulator.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_USAGE)
    except psycopg.Error as exc:
        # The server's message without the query it quotes; a failed log-in has only the text.
        reason = " ".join((exc.diag.message_primary or str(exc)).split()) or type(exc).__name__
        return _fail(f"{args.command}: {reason}", EXIT_DATABASE)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `kprintd status | head`: the reader left; say nothing more, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
