"""A throwaway PostgreSQL cluster started from the locally installed server binaries.

Owns finding the binaries (Debian installs them outside PATH), `initdb` into a temporary
directory, starting and stopping `postgres` on a Unix socket, and cleaning up. Used by the test
harness, `make demo` and the benchmarks; never by the daemon in production. As root it drops to an
unprivileged user, because initdb and postgres refuse to run as root.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

UNPRIVILEGED_USER = "postgres"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: an immediate shutdown when whoever started us dies.

    A test run killed by a timeout must not leave a server behind.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


class EmbeddedPostgresError(RuntimeError):
    """The throwaway cluster could not be created or started."""


def find_server_bindir() -> Path:
    """The directory holding initdb/postgres: newest Debian version first, then PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    for initdb in candidates:
        bindir = Path(os.path.realpath(initdb)).parent
        if (bindir / "postgres").exists():
            return bindir
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install them with: apt-get install postgresql"
    )


DIR_PREFIX = "kprintd-pg-"


def process_alive(pid: int) -> bool:
    """Does a process with this pid exist (whoever owns it)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_clusters() -> None:
    """Delete cluster directories whose owning process died without cleaning up (killed runs)."""
    for owner_file in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*/owner.pid"):
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if not process_alive(owner):
            shutil.rmtree(owner_file.parent, ignore_errors=True)


class EmbeddedPostgres:
    """A PostgreSQL cluster living in a temporary directory, reachable on a Unix socket only."""

    def __init__(self, *, durable: bool = False, max_connections: int = 200) -> None:
        self._bindir = find_server_bindir()
        self._durable = durable
        self._max_connections = max_connections
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError as exc:
                raise EmbeddedPostgresError(
                    f"running as root, but there is no '{UNPRIVILEGED_USER}' user to run "
                    "PostgreSQL as (installing Debian's postgresql package creates it)"
                ) from exc
        remove_orphaned_clusters()
        self.base_dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        (self.base_dir / "owner.pid").write_text(str(os.getpid()))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_file = self.base_dir / "postgres.log"
        self.port = 5432
        self.user = self._run_as.pw_name if self._run_as else pwd.getpwuid(os.getuid()).pw_name

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={dbname}"

    def _subprocess_identity(self) -> dict[str, int]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid}

    def _chown_tree(self) -> None:
        if self._run_as is None:
            return
        for path in (self.base_dir, self.socket_dir):
            path.mkdir(exist_ok=True)
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, self._run_as.pw_uid, self._run_as.pw_gid)

    def initdb(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        self._chown_tree()
        result = subprocess.run(
            [
                str(self._bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            cwd=self.base_dir,
            check=False,
            **self._subprocess_identity(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                "initdb failed: " + result.stderr.decode(errors="replace").strip()
            )

    def start(self, timeout: float = 30.0) -> None:
        if self._process is not None:
            return
        if not self.data_dir.exists():
            self.initdb()
        settings = [
            "listen_addresses=",
            f"unix_socket_directories={self.socket_dir}",
            f"port={self.port}",
            f"max_connections={self._max_connections}",
            "shared_buffers=128MB",
        ]
        if not self._durable:
            # A throwaway cluster: crash safety buys nothing and costs an fsync per commit.
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        args = [str(self._bindir / "postgres"), "-D", str(self.data_dir)]
        for setting in settings:
            args += ["-c", setting]
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.base_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **self._subprocess_identity(),  # type: ignore[call-overload]
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                raise EmbeddedPostgresError(f"postgres exited at start:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.05)
        raise EmbeddedPostgresError(f"postgres did not accept connections: {last_error}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server; 'fast' disconnects clients cleanly, 'immediate' is a crash."""
        process = self._process
        if process is None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


@contextlib.contextmanager
def embedded_postgres(*, durable: bool = False) -> Iterator[EmbeddedPostgres]:
    """Start a throwaway cluster for the duration of the block; always removes it afterwards."""
    server = EmbeddedPostgres(durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def copy_database(conninfo: str, name: str, template: str) -> None:
    """CREATE DATABASE name TEMPLATE template, with the template's database-level settings.

    A copy does not inherit ALTER DATABASE ... SET (kprintd's migrations set the search_path that
    finds its functions by their plain names): they are applied again here.
    """
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        row = admin.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s"
            " JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole = 0",
            (template,),
        ).fetchone()
        for setting in row[0] if row else []:
            key, value = setting.split("=", 1)
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(key), sql.SQL(value)
                )
            )
