"""Policy engine throughput: decisions per second for a 20-rule set, pure evaluation.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_policy.py [--seconds 3]``. The rule set
mixes every built-in type (carrier, regulation, identity, content; enforce and dry-run;
scoped and unscoped) and the requests cycle through calls, group creation, posts and
drive shares, so vetoes, denials and obligations all occur. Target (issue 4): at least
50,000 decisions/s.
"""

from __future__ import annotations

import argparse
import sys
import time

from anywhere.policy import Engine, Request
from anywhere.policy.facts import (
    CARRIER,
    CARRIER_COUNTRY,
    DAILY_ACTIVE_USERS,
    MEDIA_KIND_DECLARED,
    MEDIA_KIND_EXTENSION,
    MEDIA_KIND_SNIFFED,
    MVOIP_MB_USED,
    NETWORK,
    PLAN_CURRENCY,
    PLAN_PRICE,
    PUBLIC_INSTITUTION,
    VERIFIED_METHODS,
)

TARGET = 50_000

RULES = [
    {"type": "no_blocking"},
    {"type": "plan_threshold", "id": "skt-plan", "carriers": ["SKT"]},
    {"type": "plan_threshold", "id": "kt-plan", "carriers": ["KT"]},
    {"type": "plan_threshold", "id": "lgu-plan", "carriers": ["LG U+"]},
    {"type": "mvoip_quota", "id": "skt-quota", "carriers": ["SKT"], "monthly_mb": 200},
    {
        "type": "mvoip_quota",
        "id": "kt-quota",
        "carriers": ["KT"],
        "monthly_mb": 150,
        "mode": "dry-run",
    },
    {"type": "wifi_only", "id": "att-facetime", "carriers": ["AT&T"]},
    {"type": "wifi_only", "id": "kpn-wifi", "carriers": ["KPN"]},
    {"type": "fcc_2010_no_blocking", "id": "fcc"},
    {"type": "nl_7_4a", "id": "nl"},
    {"type": "none", "id": "identity-default"},
    {"type": "require_verified", "id": "verified-groups", "actions": ["group.create"]},
    {"type": "threshold", "id": "real-name-2007", "actions": ["room.post"]},
    {
        "type": "require_verified",
        "id": "public-institutions",
        "actions": ["room.post", "drive.share"],
        "scope": {"public_institution": True},
    },
    {
        "type": "require_verified",
        "id": "gov-invites",
        "actions": ["room.invite"],
        "scope": {"rooms": ["!gov*:example.org"]},
    },
    {"type": "copyright_media", "id": "copyright"},
    {
        "type": "copyright_media",
        "id": "copyright-archives",
        "mode": "dry-run",
        "kinds": ["audio", "video", "archive"],
    },
    {
        "type": "require_verified",
        "id": "verified-callers",
        "actions": ["call.place"],
        "methods": ["code"],
        "mode": "dry-run",
    },
    {
        "type": "plan_threshold",
        "id": "corp-5g",
        "thresholds": {"5g": 60000},
        "scope": {"users": ["@*:corp.example"]},
        "mode": "dry-run",
    },
    {
        "type": "mvoip_quota",
        "id": "intern-quota",
        "monthly_mb": 50,
        "scope": {"users": ["@intern-*:example.org"]},
    },
]

KR_3G_CHEAP = {
    CARRIER: "SKT",
    CARRIER_COUNTRY: "KR",
    NETWORK: "3g",
    PLAN_PRICE: 45000,
    PLAN_CURRENCY: "KRW",
    MVOIP_MB_USED: 20,
}
REQUESTS = [
    Request("@kim:example.org", "call.place", "@lee:example.org", facts=KR_3G_CHEAP),
    Request("@kim:example.org", "call.place", facts={**KR_3G_CHEAP, NETWORK: "wifi"}),
    Request(
        "@park:example.org",
        "call.answer",
        facts={**KR_3G_CHEAP, PLAN_PRICE: 55000, NETWORK: "3g", MVOIP_MB_USED: 120},
    ),
    Request(
        "@sam:example.com",
        "call.place",
        facts={CARRIER: "AT&T", CARRIER_COUNTRY: "US", NETWORK: "lte"},
    ),
    Request("@kim:example.org", "group.create", facts={VERIFIED_METHODS: ()}),
    Request(
        "@kim:example.org",
        "room.post",
        room_id="!team:example.org",
        facts={DAILY_ACTIVE_USERS: 150_000, VERIFIED_METHODS: ("email",)},
    ),
    Request(
        "@kim:example.org",
        "room.post",
        room_id="!city:example.org",
        facts={DAILY_ACTIVE_USERS: 9_000, PUBLIC_INSTITUTION: True},
    ),
    Request(
        "@kim:example.org",
        "drive.share",
        facts={MEDIA_KIND_SNIFFED: "video", MEDIA_KIND_EXTENSION: "video"},
    ),
    Request(
        "@kim:example.org",
        "drive.share",
        facts={MEDIA_KIND_SNIFFED: "document", MEDIA_KIND_DECLARED: "document"},
    ),
]


def measure(engine: Engine, seconds: float) -> tuple[int, float]:
    requests = REQUESTS
    evaluate = engine.evaluate
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            for request in requests:
                evaluate(request)
        count += 200 * len(requests)
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    args = parser.parse_args(argv)
    engine = Engine.from_config(RULES)
    assert len(engine.ruleset) == 20
    measure(engine, 0.2)  # warm up the per-action plans
    count, elapsed = measure(engine, args.seconds)
    rate = count / elapsed
    verdict = "meets" if rate >= TARGET else "MISSES"
    print(
        f"policy engine, {len(engine.ruleset)}-rule set: {rate:,.0f} decisions/s "
        f"({count:,} in {elapsed:.2f} s, {1e6 / rate:.1f} µs each) — {verdict} the target "
        f"of {TARGET:,}/s (Python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
