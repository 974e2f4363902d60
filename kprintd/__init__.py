"""kprintd: the kitchen printer daemon. The database is the API; this package prints what it queues."""

__version__ = "0.1.0"
