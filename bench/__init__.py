"""kprintd benchmarks: latency, throughput, isolation and memory of the real daemon.

`python -m bench.run` (or `make bench`) starts a throwaway PostgreSQL cluster, emulated printers
on loopback and `kprintd run` as a child process, drives them like a POS would, and reports each
figure against its target. docs/benchmarks.md explains what is measured and how.
"""
