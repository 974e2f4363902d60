"""Running the real kprintd: in-process (a thread with its own event loop) or as a `kprintd run`
child process that can be SIGTERMed or SIGKILLed.

Owns starting the daemon, knowing when it is ready and stopping it again. In-process
(:class:`RunningDaemon`) is what the tests and the demo use: the daemon's objects can be looked at.
A child process (:class:`DaemonProcess`) is configured only through KPRINTD_* variables, as under
systemd, has its own memory and GIL, and can tell it is ready over NOTIFY_SOCKET (the benchmark).
`running_daemon`, `daemon_process` and `daemon_env` are the tests' shortcuts: FAST_SETTINGS, and
the daemon's own login.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import uvloop

from kprintd.config import Settings
from kprintd.daemon import Daemon
from kprintd.harness.cluster import as_login

# The tests' settings: timeouts and retries short enough for a test to see them happen.
FAST_SETTINGS: dict[str, Any] = {
    "printer_connect_timeout_s": 0.5,
    "printer_send_timeout_s": 0.5,
    "retry_base_delay_s": 0.2,
    "retry_max_delay_s": 0.5,
    "sweep_interval_s": 0.5,
    "lease_s": 5.0,
    "breaker_open_s": 30.0,
    "shutdown_timeout_s": 5.0,
    "log_format": "json",
    "log_level": "warning",
}

PR_SET_PDEATHSIG = 1


class DaemonError(RuntimeError):
    """The daemon did not start, stopped on its own, or did not stop when asked."""


class RunningDaemon:
    """A Daemon on its own event loop thread; `stop()` is what SIGTERM does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.daemon: Daemon | None = None
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="kprintd-daemon", daemon=True)

    def _main(self) -> None:
        async def body() -> int:
            self._loop = asyncio.get_running_loop()
            self.daemon = Daemon(self.settings)
            return await self.daemon.run()

        try:
            self.exit_code = uvloop.run(body())
        except BaseException as exc:  # reported by check() on the caller's thread
            self.error = exc

    def check(self) -> None:
        """Raise DaemonError if the daemon stopped without being asked to."""
        if self._thread.ident is not None and not self._thread.is_alive():
            raise DaemonError(f"kprintd stopped unexpectedly: {self.error or self.exit_code}")

    def start(self, ready_timeout: float = 15.0) -> RunningDaemon:
        """Start the daemon and return once it listens and has scanned for due tickets."""
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not (self.daemon is not None and self.daemon.ready.is_set()):
            self.check()
            if time.monotonic() > deadline:
                raise DaemonError(f"kprintd was not ready after {ready_timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask for a clean stop and wait for it; returns the daemon's exit code."""
        if self._loop is not None and self.daemon is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop ended in the meantime
                self._loop.call_soon_threadsafe(self.daemon.request_stop)
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise DaemonError(f"kprintd did not stop within {timeout:g} s")
        return self.exit_code


def kprintd_env(
    settings: Mapping[str, Any], *, notify_socket: Path | None = None
) -> dict[str, str]:
    """This process's environment with kprintd's settings as KPRINTD_* variables only.

    With `notify_socket`, systemd's variables are replaced: NOTIFY_SOCKET names that socket.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPRINTD_")}
    if notify_socket is not None:
        env = {
            key: value
            for key, value in env.items()
            if not key.startswith("WATCHDOG_") and key != "NOTIFY_SOCKET"
        }
        env["NOTIFY_SOCKET"] = str(notify_socket)
    env.update({f"KPRINTD_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM it when whoever started it dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class DaemonProcess:
    """`kprintd run` as a child process, its output (stdout and stderr) appended to `log_path`.

    With `notify_socket`, the daemon tells it is ready as under systemd (READY=1), which
    wait_ready() waits for. The child runs in its own session and is SIGTERMed if this process
    dies; kill() (or leaving the `with` block) makes sure it is gone.
    """

    def __init__(
        self, settings: Mapping[str, Any], log_path: Path, *, notify_socket: Path | None = None
    ) -> None:
        self.settings = dict(settings)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._notify_path = notify_socket
        self._notify: socket.socket | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "daemon not started"
        return self.process.pid

    def start(self) -> DaemonProcess:
        if self._notify_path is not None:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self._notify_path))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kprintd.cli", "run"],
                env=kprintd_env(self.settings, notify_socket=self._notify_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the daemon said READY=1 (it listens and has scanned for due tickets)."""
        assert self.process is not None and self._notify is not None, "start with notify_socket"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise DaemonError(f"kprintd run exited with {code} at start:\n{self.log_tail()}")
            self._notify.settimeout(0.2)
            try:
                message = self._notify.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in message.split("\n"):
                # Later status messages find no socket, which the daemon shrugs off.
                self._close_notify()
                return
        raise DaemonError(f"kprintd run was not ready within {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd stops it, and wait for the exit; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Cleanup: whatever is left of the daemon is gone after this."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


# --------------------------------------------------------------------------- the tests' shortcuts


@contextlib.contextmanager
def running_daemon(database_url: str, **overrides: Any) -> Iterator[RunningDaemon]:
    """`kprintd run` in-process with FAST_SETTINGS, as the daemon's login, as in a store."""
    settings = Settings(
        database_url=as_login(database_url, "kprintd_daemon"), **{**FAST_SETTINGS, **overrides}
    )
    daemon = RunningDaemon(settings).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def daemon_env(database_url: str, **overrides: Any) -> dict[str, str]:
    """The environment of a kprintd command run with FAST_SETTINGS on `database_url`."""
    return kprintd_env({**FAST_SETTINGS, "database_url": database_url, **overrides})


@contextlib.contextmanager
def daemon_process(
    database_url: str, log_path: Path, **overrides: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """`kprintd run` as a child process with FAST_SETTINGS, logged in as the daemon's role (this
    process's NOTIFY_SOCKET, if any, passed on); killed at the end if the test did not stop it."""
    settings = {
        **FAST_SETTINGS,
        "database_url": as_login(database_url, "kprintd_daemon"),
        **overrides,
    }
    with DaemonProcess(settings, log_path) as daemon:
        assert daemon.process is not None
        yield daemon.process
