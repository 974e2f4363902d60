"""The test-and-demo harness: PostgreSQL, kprintd, emulated printers and a POS, on this machine.

Serves the test suite (its fixtures are the pytest plugin kprintd.harness.pytest_plugin), `make
demo` (kprintd.harness.demo) and the benchmarks (bench/). Never used by the daemon in production,
and nothing outside kprintd/harness/ and kprintd/emulator/ in kprintd/ imports it.

    cluster   PostgresServer: a throwaway cluster (pgembed) or a given server, a migrated
              template copied per use, one login per duty (LOGINS, as_login)
    daemon    the real daemon in-process (RunningDaemon) or as `kprintd run` (DaemonProcess)
    printers  emulated printers on loopback addresses of their own
    pos       Restaurant (brand, products, station printers), Pos (bills sent to the kitchen),
              and the POS's rows one by one (make_brand, make_bill, add_item, ...)
    observe   queries, wait_until, tickets, alerts
"""

from kprintd.harness.cluster import (
    LOGIN_PASSWORD,
    LOGINS,
    PostgresServer,
    any_server,
    as_login,
    embedded_server,
)
from kprintd.harness.daemon import (
    FAST_SETTINGS,
    DaemonError,
    DaemonProcess,
    RunningDaemon,
    daemon_env,
    daemon_process,
    kprintd_env,
    running_daemon,
)
from kprintd.harness.observe import (
    alerts_process,
    all_settled,
    has_retry_banner,
    listener_connected,
    log_actions,
    query,
    received_alerts,
    ticket,
    ticket_id_of,
    ticket_statuses,
    wait_until,
)
from kprintd.harness.pos import (
    Order,
    Pos,
    Restaurant,
    add_item,
    make_bill,
    make_brand,
    make_printer,
    make_product,
    send_to_kitchen,
    ticket_lines,
    void_item,
)
from kprintd.harness.printers import next_loopback, start_printer

__all__ = [
    "FAST_SETTINGS",
    "LOGINS",
    "LOGIN_PASSWORD",
    "DaemonError",
    "DaemonProcess",
    "Order",
    "Pos",
    "PostgresServer",
    "Restaurant",
    "RunningDaemon",
    "add_item",
    "alerts_process",
    "all_settled",
    "any_server",
    "as_login",
    "daemon_env",
    "daemon_process",
    "embedded_server",
    "has_retry_banner",
    "kprintd_env",
    "listener_connected",
    "log_actions",
    "make_bill",
    "make_brand",
    "make_printer",
    "make_product",
    "next_loopback",
    "query",
    "received_alerts",
    "running_daemon",
    "send_to_kitchen",
    "start_printer",
    "ticket",
    "ticket_id_of",
    "ticket_lines",
    "ticket_statuses",
    "void_item",
    "wait_until",
]
