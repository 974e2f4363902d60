"""pgqueuer's no-op rate on the benchmark's cluster, for scale next to kprintd's throughput.

`python -m bench.pgqueuer_noop CONNINFO JOBS` (a child process, so it has a GIL of its own like
the daemon): installs pgqueuer's schema in the given (fresh) database, enqueues JOBS jobs for a
no-op entrypoint in batches, then times one QueueManager draining them (mode=drain, batch size
10, pgqueuer's default). Prints one JSON line: {"jobs": n, "seconds": s, "jobs_per_s": r,
"version": v}. pgqueuer is an optional dependency (`pip install -e '.[bench]'`); without it the
child prints {"error": ...} and exits 2, and the report says so.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import time
from datetime import timedelta

ENQUEUE_BATCH = 1_000


async def _run(conninfo: str, jobs: int) -> dict[str, object]:
    import psycopg
    from pgqueuer import Queries, QueueManager
    from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    version = importlib.metadata.version("pgqueuer")

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.install()
        for start in range(0, jobs, ENQUEUE_BATCH):
            n = min(ENQUEUE_BATCH, jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    done = 0
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        qm = QueueManager(Queries(PsycopgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1

        started = time.monotonic()
        await qm.run(mode=QueueExecutionMode.drain, log_aggregation_interval=_zero())
        seconds = time.monotonic() - started
    return {"jobs": done, "seconds": seconds, "jobs_per_s": done / seconds, "version": version}


def _zero() -> timedelta:
    return timedelta(0)


def main(argv: list[str]) -> int:
    conninfo, jobs = argv[0], int(argv[1])
    try:
        import pgqueuer  # noqa: F401
    except ImportError as exc:
        print(
            json.dumps({"error": f"pgqueuer is not installed ({exc}); pip install -e '.[bench]'"})
        )
        return 2
    print(json.dumps(asyncio.run(_run(conninfo, jobs))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
