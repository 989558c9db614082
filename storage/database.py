"""The one database handle shared by the runtime and the plugins."""

from __future__ import annotations

import logging
from pathlib import Path

from mautrix.util.async_db import Database
from mautrix.util.logging import TraceLogger


async def open_database(url: str) -> Database:
    """Open ``sqlite:/path/file.db`` or ``postgres://...`` and start its pool.

    SQLite runs in WAL mode with ``synchronous=FULL``: a transaction the bridge has
    acknowledged survives a crash and a power cut, not only a killed process.
    """
    db_args: dict = {}
    if url.startswith("sqlite"):
        path = url.partition(":")[2]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db_args["init_commands"] = ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"]
        # WAL lets readers work beside the writer: the inbox worker and the plugins
        # do not wait for the connection that stores the next transaction.
        db_args["min_size"] = 4
    else:
        db_args = {"min_size": 1, "max_size": 10}
    db = Database.create(
        url,
        upgrade_table=None,
        db_args=db_args,
        log=trace_logger("anywhere.db"),
        owner_name="anywhere",
        # Refuse to share a database with Synapse or Dendrite by mistake.
        ignore_foreign_tables=False,
    )
    await db.start()
    return db


def trace_logger(name: str) -> TraceLogger:
    """mautrix wants its TraceLogger class, which only loggers made after mautrix's
    logging module was imported have."""
    logger = logging.getLogger(name)
    if not isinstance(logger, TraceLogger):
        logging.Logger.manager.loggerDict.pop(name, None)
        logger = TraceLogger(name)
        logging.Logger.manager.loggerDict[name] = logger
        logger.parent = (
            logging.getLogger(name.rpartition(".")[0] or "root")
            if "." in name
            else logging.getLogger()
        )
    return logger
