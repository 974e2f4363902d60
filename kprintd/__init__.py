"""kprintd: the kitchen printer daemon. The database is the API; kprintd prints what it queues."""

__version__ = "0.1.0"
