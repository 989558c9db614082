"""The reference servers bench_ingest.py measures the bridge against (run by it).

``ingest_reference.py PORT parse`` — the ceiling: the appservice transaction route, and
nothing but parsing the JSON body (the json module, as aiohttp's ``request.json()``) and
answering 200 ``{}``.

``ingest_reference.py PORT store DB`` — the durable floor: the ceiling plus what any
receiver that stores a transaction durably before its 200 must add, and nothing else:
orjson instead of the json module, one autocommitted INSERT of the raw body into a table
like the bridge's inbox (SQLite, WAL, ``synchronous=FULL``: one fsync per transaction) on
the event loop's thread, and a passive WAL checkpoint every second from another thread.
No plugins, no handling: the most a receiver with one fsync per transaction can
acknowledge on this machine.

``ingest_reference.py 0 handle DB MICROSECONDS`` — beside the floor, what a bridge split
into a receiving process and a handling process would run in the second one: it reads
the floor's stored transactions in order, parses each and spends ``MICROSECONDS`` of CPU
per event (the bridge's plugins take about 2.5). With it running, the floor's figure is
the best such a two-process bridge could acknowledge here.

Prints ``ready`` once listening (or reading).
"""

import asyncio
import sqlite3
import sys
import threading
import time

from aiohttp import web


async def parse_only(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({})


def durable_store(path: str):
    """The floor's handler, with its SQLite inbox at ``path``."""
    import orjson

    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY, "
        "txn_id TEXT NOT NULL UNIQUE, received_at BIGINT NOT NULL, body TEXT NOT NULL)"
    )
    lock = threading.Lock()  # no insert while a checkpoint runs, as in the bridge

    def checkpoints() -> None:
        other = sqlite3.connect(path, isolation_level=None, timeout=10)
        while True:
            time.sleep(1.0)
            with lock:
                other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    threading.Thread(target=checkpoints, daemon=True).start()

    async def parse_and_store(request: web.Request) -> web.Response:
        raw = await request.read()
        orjson.loads(raw)
        with lock:
            conn.execute(
                "INSERT INTO inbox (txn_id, received_at, body) VALUES (?, ?, ?) "
                "ON CONFLICT (txn_id) DO NOTHING RETURNING seq",
                (request.match_info["txn_id"], int(time.time() * 1000), raw.decode()),
            ).fetchall()
        return web.json_response({})

    return parse_and_store


def handle(path: str, per_event_us: float) -> None:
    import orjson

    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    handled, idle = 0, 0.0005
    print("ready", flush=True)
    while True:
        rows = conn.execute(
            "SELECT seq, body FROM inbox WHERE seq > ? ORDER BY seq LIMIT 50", (handled,)
        ).fetchall()
        if not rows:  # quick to notice the next one, quiet while the others are measured
            time.sleep(idle)
            idle = min(0.02, idle * 1.1)
            continue
        idle = 0.0005
        for seq, body in rows:
            events = orjson.loads(body)["events"]
            busy_until = time.perf_counter() + per_event_us * len(events) / 1e6
            while time.perf_counter() < busy_until:
                pass
            handled = seq


async def main(port: int, mode: str, db_path: str | None) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    handler = durable_store(db_path) if mode == "store" and db_path else parse_only
    app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[2] == "handle":
        handle(sys.argv[3], float(sys.argv[4]))
    else:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
