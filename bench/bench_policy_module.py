"""The time Anywhere's Synapse module adds to an event, cold and warm, with the bridge
up, down and hung.

Run: ``.venv/bin/python bench/bench_policy_module.py [--events 60 --spaced 40]``.

Four Synapses (same version, same generated config, SQLite, on this machine):

* ``plain``: no module — the client-side baseline;
* ``module``: the module with the example rule set
  (``policy/examples/korea-2012.rules.yaml``: carrier rules cover ``call.place``, the
  identity threshold covers ``room.post``) and the real bridge (``python -m anywhere run``
  with the ``policy`` plugin), ``facts_refresh_seconds: 0.5``;
* ``down``: the module with its bridge killed (a closed port): facts unavailable;
* ``hung``: the module with a bridge that accepts connections and never answers
  (``timeout_seconds: 2``, ``breaker_seconds: 10``).

The person is on SKT with a 60,000 KRW plan on 3G, so a call is *allowed* after the
carrier rules ran: the whole path, not an early exit.

Measured on ``module``:

* **spaced** ``m.call.invite``: one call, then a wait of 2.5 ``facts_refresh_seconds``
  (longer than any lifetime in the module: at least two background exchanges ran in
  between), then the next: the case of a person whose calls are minutes apart — there is
  no per-person cache left to be cold, the facts are always in the module. **The target
  (issue 13) is judged on this: under 1 ms.**
* **warm** ``m.call.invite``: calls back to back;
* ``m.room.message``: ordinary posts (the identity threshold is not reached).

On ``down`` and ``hung``: ordinary posts (target < 1 ms, and they pass), and call
invites (refused at once: the facts are unavailable). For ``hung``, the number of
exchanges the hung bridge received during the run against the number of breaker
periods it lasted: one timeout per period, in the background.

Each event is a ``PUT /_matrix/client/v3/rooms/{room}/send/...`` on a kept-alive
connection, one at a time. The figure to read is the time Synapse itself measured
inside the module's ``check_event_for_spam`` (its
``synapse_util_metrics_block_time_seconds`` counter, block
``anywhere.policy.synapse_module.AnywherePolicyModule.check_event_for_spam``, read from
``/_synapse/metrics`` before and after each phase), divided by the number of events —
exactly the time the module adds to each event. Client-side times are printed too (a
Synapse send is several ms, and noisy).

A benchmark reports; it is not a test: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from anywhere.bridge.testing.stack import Stack  # noqa: E402
from anywhere.bridge.testing.synapse import Synapse, free_port  # noqa: E402

TARGET_MS = 1.0
MODULE = "anywhere.policy.synapse_module.AnywherePolicyModule"
BLOCK = "anywhere.policy.synapse_module.AnywherePolicyModule.check_event_for_spam"
EXAMPLE_RULES = ROOT / "policy" / "examples" / "korea-2012.rules.yaml"
CALLER = "caller"
SUBSCRIBERS = {
    f"@{CALLER}:localhost": {
        "carrier": "SKT",
        "carrier_country": "KR",
        "plan_price": 60000,
        "plan_currency": "KRW",
    }
}


def with_metrics(hs: Synapse) -> None:
    """Serve /_synapse/metrics on the client listener (read once at the end)."""
    listeners = hs.build_config()["listeners"]
    listeners[0]["resources"][0]["names"].append("metrics")
    hs.extra_config["listeners"] = listeners
    hs.extra_config["enable_metrics"] = True


def module(rules: Path, bridge_url: str, token: str, **options: Any) -> list[dict[str, Any]]:
    return [
        {
            "module": MODULE,
            "config": {
                "rules_file": str(rules),
                "bridge_url": bridge_url,
                "bridge_token": token,
                "ignore_users": ["@anywhere_.*:localhost", "@anywhere:localhost"],
                "bridge_bot": "@anywhere:localhost",
                **options,
            },
        }
    ]


class HungBridge:
    """Accepts connections and reads requests, never answers; counts the requests."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.requests += data.count(b"POST /_anywhere/policy/sync")

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


class Sender:
    """One person in one room of one Synapse, sending events on a kept-alive connection."""

    def __init__(self, name: str, hs: Synapse) -> None:
        self.name = name
        self.hs = hs
        user = hs.register_user(CALLER, "pw")
        self.token = user["access_token"]
        status, body = hs.request(
            "POST", "/_matrix/client/v3/createRoom", {"name": "bench"}, access_token=self.token
        )
        if status != 200:
            raise RuntimeError(f"{name}: createRoom: {status} {body}")
        self.room = urllib.parse.quote(body["room_id"])
        self.conn = http.client.HTTPConnection(hs.host, hs.port, timeout=30)
        self._txn = 0

    def send(self, event_type: str, expect: int = 200) -> float:
        """Send one event; the client-side seconds it took."""
        self._txn += 1
        if event_type == "m.call.invite":
            content = {
                "call_id": f"bench{self._txn}",
                "version": "1",
                "lifetime": 60000,
                "offer": {"type": "offer", "sdp": "v=0\r\n"},
            }
        else:
            content = {"msgtype": "m.text", "body": f"message {self._txn}"}
        path = f"/_matrix/client/v3/rooms/{self.room}/send/{event_type}/b{self._txn}"
        started = time.perf_counter()
        self.conn.request(
            "PUT",
            path,
            body=json.dumps(content),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != expect:
            raise RuntimeError(
                f"{self.name}: {event_type}: HTTP {response.status}, expected {expect}: "
                f"{body[:300]!r}"
            )
        return elapsed

    def module_seconds(self) -> tuple[float, int]:
        """(total seconds, calls) of the module's callback, as Synapse measured them."""
        with urllib.request.urlopen(f"{self.hs.url}/_synapse/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = calls = 0.0
        for line in text.splitlines():
            if BLOCK not in line:
                continue
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("synapse_util_metrics_block_time_seconds_total"):
                total = value
            elif line.startswith("synapse_util_metrics_block_count_total"):
                calls = value
        return total, int(calls)

    def phase(self, event_type: str, count: int, *, expect: int = 200, gap: float = 0.0):
        """Send ``count`` events (``gap`` seconds apart); (module ms per event, client
        median ms)."""
        before = self.module_seconds()
        times = []
        for _ in range(count):
            times.append(self.send(event_type, expect))
            if gap:
                time.sleep(gap)
        after = self.module_seconds()
        calls = after[1] - before[1]
        per_event = (after[0] - before[0]) / calls * 1000 if calls else float("nan")
        return per_event, statistics.median(times) * 1000


def bridge_facts(bridge_url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{bridge_url}/_anywhere/policy/facts?user=%40{CALLER}%3Alocalhost&action=call.place",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)["facts"]


def report_network(
    sender: Sender, bot_id: str, bridge_url: str, token: str, network: str
) -> dict[str, Any]:
    """Open a DM with the bot, send ``!network NETWORK``, wait until the bridge knows."""
    hs, auth = sender.hs, sender.token
    status, body = hs.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"invite": [bot_id], "is_direct": True, "preset": "trusted_private_chat"},
        access_token=auth,
    )
    if status != 200:
        raise RuntimeError(f"DM with the bot: {status} {body}")
    room = urllib.parse.quote(body["room_id"])
    deadline = time.monotonic() + 30
    while True:
        _, members = hs.request(
            "GET", f"/_matrix/client/v3/rooms/{room}/joined_members", access_token=auth
        )
        if bot_id in (members or {}).get("joined", {}):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the bot did not join the DM")
        time.sleep(0.2)
    hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/send/m.room.message/net{time.monotonic_ns()}",
        {"msgtype": "m.text", "body": f"!network {network}"},
        access_token=auth,
    )
    while True:
        facts = bridge_facts(bridge_url, token)
        if facts.get("network") == network:
            return facts
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bridge did not note the network: {facts}")
        time.sleep(0.2)


REFRESH = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60, help="events per phase")
    parser.add_argument("--spaced", type=int, default=40, help="spaced calls")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-policy-module-"))
    rules = tmp / "rules.yaml"
    rules.write_text(EXAMPLE_RULES.read_text("utf-8"), "utf-8")
    subscribers = tmp / "subscribers.yaml"
    subscribers.write_text(yaml.safe_dump(SUBSCRIBERS), "utf-8")

    stack = Stack(
        tmp / "stack",
        ["basics", "policy"],
        settings={"policy": {"rules_file": str(rules), "subscribers_file": str(subscribers)}},
    )
    bridge_url, token = stack.bridge.url, stack.config["operations"]["token"]
    hung_bridge = HungBridge()
    closed = f"http://127.0.0.1:{free_port()}"
    stack.synapse.extra_config["modules"] = module(
        rules, bridge_url, token, facts_refresh_seconds=REFRESH
    )
    breaker = 10.0
    servers = {
        "plain": Synapse(tmp / "plain"),
        "module": stack.synapse,
        "down": Synapse(tmp / "down", extra_config={"modules": module(rules, closed, token)}),
        "hung": Synapse(
            tmp / "hung",
            extra_config={
                "modules": module(
                    rules, hung_bridge.url, token, timeout_seconds=2, breaker_seconds=breaker
                )
            },
        ),
    }
    for hs in servers.values():
        with_metrics(hs)
    started: list[Any] = []
    results: dict[str, tuple[float, float]] = {}
    try:
        for name, hs in servers.items():
            if name == "module":
                stack.start()
                started.append(stack)
            else:
                hs.start()
                started.append(hs)
        hung_started = time.monotonic()
        senders = {name: Sender(name, hs) for name, hs in servers.items()}
        # The person tells the bot `!network 3g`: the carrier rules then really run
        # (plan 60,000 KRW >= 54,000 on 3G: allowed).
        facts = report_network(senders["module"], stack.bot_id, bridge_url, token, "3g")
        print(f"facts from the bridge for @{CALLER}:localhost: {facts}")
        time.sleep(REFRESH * 3)  # the module has them (a benchmark may wait; a test may not)

        refused = 403
        for name in ("plain", "module"):
            for _ in range(args.warmup):
                senders[name].send("m.call.invite")
                senders[name].send("m.room.message")
        for name in ("down", "hung"):
            for _ in range(args.warmup):
                senders[name].send("m.call.invite", refused)
                senders[name].send("m.room.message")

        results["plain: m.call.invite"] = senders["plain"].phase("m.call.invite", args.events)
        results["module: m.call.invite, spaced"] = senders["module"].phase(
            "m.call.invite", args.spaced, gap=REFRESH * 2.5
        )
        results["module: m.call.invite, warm"] = senders["module"].phase(
            "m.call.invite", args.events
        )
        results["module: m.room.message"] = senders["module"].phase("m.room.message", args.events)
        for name in ("down", "hung"):
            results[f"{name}: m.room.message"] = senders[name].phase("m.room.message", args.events)
            results[f"{name}: m.call.invite (refused)"] = senders[name].phase(
                "m.call.invite", args.events, expect=refused
            )
        hung_seconds = time.monotonic() - hung_started
    finally:
        for item in reversed(started):
            item.stop()
        hung_bridge.close()

    print("\nTime inside the module's check_event_for_spam per event (Synapse's own measure),")
    print("and the client-side median time per event:")
    for name, (module_ms, client_ms) in results.items():
        inside = "" if name.startswith("plain") else f"{module_ms:7.3f} ms"
        print(f"  {name:<36} {inside:>10}   client {client_ms:7.3f} ms")
    spaced = results["module: m.call.invite, spaced"][0]
    ordinary = max(results["down: m.room.message"][0], results["hung: m.room.message"][0])
    periods = hung_seconds / breaker
    print(
        f"\nAdded per m.call.invite, calls spaced beyond every lifetime: {spaced:.3f} ms "
        f"— target < {TARGET_MS} ms: {'met' if spaced < TARGET_MS else 'NOT met'}"
    )
    print(
        f"Added per ordinary message with the bridge down or hung: {ordinary:.3f} ms "
        f"— target < {TARGET_MS} ms: {'met' if ordinary < TARGET_MS else 'NOT met'}"
    )
    print(
        f"Hung bridge: {hung_bridge.requests} exchanges tried in {hung_seconds:.0f} s "
        f"({periods:.1f} breaker periods of {breaker:g} s: one timeout per period) — none "
        "on an event's path"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
