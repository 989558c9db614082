"""Prometheus metrics, served at GET /metrics (operator token)."""

from prometheus_client import Counter, Histogram

EVENTS_RECEIVED = Counter(
    "anywhere_events_received_total", "Events stored from homeserver transactions"
)
EVENTS_HANDLED = Counter(
    "anywhere_events_handled_total", "Events handed to plugins", ["event_type"]
)
TRANSACTION_SECONDS = Histogram(
    "anywhere_transaction_seconds",
    "Time to store a transaction before answering 200",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
HANDLER_ERRORS = Counter(
    "anywhere_handler_errors_total", "Exceptions raised by plugin handlers", ["plugin"]
)
INBOX_WRITE_LOCK_BUSY = Counter(
    "anywhere_inbox_write_lock_busy_total",
    "Transactions stored through the connection pool because SQLite's write lock was taken",
)
JOBS = Counter(
    "anywhere_jobs_total",
    "Background jobs run, by outcome (done, retried, failed)",
    ["kind", "outcome"],
)
COMMANDS = Counter("anywhere_commands_total", "Commands run", ["command", "outcome"])


_handled_children: dict = {}


def events_handled(event_type: str):
    """The counter child for ``event_type`` (cached: this runs for every event)."""
    child = _handled_children.get(event_type)
    if child is None:
        if len(_handled_children) > 1000:  # hostile event types must not grow this forever
            event_type = "other"
        child = _handled_children[event_type] = EVENTS_HANDLED.labels(event_type)
    return child
