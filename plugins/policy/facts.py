"""Gathering the facts rules decide on, before the (pure) rules run."""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anywhere.policy import facts as F
from anywhere.policy.errors import PolicyConfigError, Problem
from anywhere.policy.rules.params import Invalid, positive_number, upper_code
from anywhere.policy.rules.params import text as text_param

from .feed import FactsFeed

if TYPE_CHECKING:
    from anywhere.bridge.api import Host


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def read_subscribers(path: Path | None, carriers: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """The subscriber directory: ``{user_id: {carrier, carrier_country, plan_price,
    plan_currency}}``, checked like rules: every problem at once, each with its line and
    what was expected. ``carriers``: the carrier names the rules use — a name that matches
    one only when upper/lower case is ignored (``skt``) is a mistake."""
    if path is None:
        return {}
    try:
        text = path.read_text("utf-8")
        data = yaml.safe_load(text) or {}
        lines = _key_lines(text)
    except OSError as exc:
        raise PolicyConfigError(
            [Problem(str(path), "a readable subscribers file", exc.strerror or str(exc))]
        ) from exc
    except yaml.YAMLError as exc:
        raise PolicyConfigError([Problem(str(path), "valid YAML", str(exc))]) from exc
    if not isinstance(data, dict):
        raise PolicyConfigError([Problem(str(path), "a mapping of user IDs", type(data).__name__)])
    by_folded = {c.casefold(): c for c in carriers}
    problems: list[Problem] = []
    directory = {}
    for user_id, entry in data.items():
        where = f"{path}:{lines.get(str(user_id), '?')}: {user_id}"
        if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
            problems.append(Problem(where, "a Matrix user ID (@name:server)", user_id))
            continue
        if not isinstance(entry, dict):
            problems.append(Problem(where, f"a mapping with keys among {_KEYS}", entry))
            continue
        clean: dict[str, Any] = {}
        for key, value in entry.items():
            check = _SUBSCRIBER_CHECKS.get(key)
            if check is None:
                hint = difflib.get_close_matches(str(key), SUBSCRIBER_KEYS, n=1, cutoff=0.5)
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        f"one of {_KEYS}",
                        hint=f"did you mean {hint[0]!r}?" if hint else "",
                    )
                )
                continue
            try:
                clean[key] = check(value)
            except Invalid as exc:
                problems.append(Problem(f"{where}.{key}", exc.expected, exc.found, exc.hint))
                continue
            if key == F.CARRIER and value not in by_folded.values():
                same = by_folded.get(str(value).casefold())
                if same is not None:
                    problems.append(
                        Problem(
                            f"{where}.{key}",
                            "a carrier name as the rules write it",
                            value,
                            f"did you mean {same!r}?",
                        )
                    )
        directory[user_id] = clean
    if problems:
        raise PolicyConfigError(problems)
    return directory


def _key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key of a YAML mapping."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


_SUBSCRIBER_CHECKS = {
    F.CARRIER: text_param,
    F.CARRIER_COUNTRY: upper_code(2, "ISO 3166-1 country"),
    F.PLAN_PRICE: positive_number,
    F.PLAN_CURRENCY: upper_code(3, "ISO 4217 currency"),
}
SUBSCRIBER_KEYS = tuple(_SUBSCRIBER_CHECKS)
_KEYS = ", ".join(SUBSCRIBER_KEYS)


class FactGatherer:
    """Reads what the bridge knows about a person; the only place facts do I/O."""

    DAU_CACHE_SECONDS = 60.0

    def __init__(self, bridge: Host, settings: dict[str, Any]) -> None:
        self.bridge = bridge
        self.settings = settings
        self._subscribers: dict[str, dict[str, Any]] = {}
        #: Whose facts changed, for the Synapse module's exchanges.
        self.feed = FactsFeed()
        self._seen_today: tuple[str, set[str]] = ("", set())
        self._day_ends = 0.0
        self._dau: tuple[float, int] = (0.0, 0)
        self._threepids: dict[str, tuple[float, list[str]]] = {}

    @property
    def subscribers(self) -> dict[str, dict[str, Any]]:
        return self._subscribers

    @subscribers.setter
    def subscribers(self, directory: dict[str, dict[str, Any]]) -> None:
        if directory != self._subscribers:
            self.feed.reset()  # the module gets everything again
        self._subscribers = directory

    async def module_facts(self, user_id: str) -> dict[str, Any]:
        """What the Synapse module keeps about ``user_id``: the stored facts (the
        subscriber directory, the network, usage, verification). Not the facts of
        ``anywhere_policy_gather_facts`` plugins (those depend on the action) nor the global ones
        (sent apart)."""
        db = self.bridge.db
        facts: dict[str, Any] = dict(self._subscribers.get(user_id, {}))
        network = await self.module_network(user_id)
        if network:
            facts[F.NETWORK] = network
        used = await db.fetchval(
            "SELECT amount FROM policy_usage WHERE user_id = $1 AND month = $2 AND metric = $3",
            user_id,
            this_month(),
            "mvoip_mb",
        )
        facts[F.MVOIP_MB_USED] = float(used or 0.0)
        facts[F.VERIFIED_METHODS] = await self.verified_methods(user_id, ask_homeserver=False)
        return facts

    async def module_snapshot(self) -> dict[str, dict[str, Any]]:
        """:meth:`module_facts` of everyone the bridge knows something about (people
        with no stored fact are missing: for them every fact is unknown)."""
        db = self.bridge.db
        retention = self.settings["verification"]["retention_days"] * 86400
        snapshot: dict[str, dict[str, Any]] = {
            user: {**entry, F.MVOIP_MB_USED: 0.0, F.VERIFIED_METHODS: []}
            for user, entry in self._subscribers.items()
        }

        def person(user_id: str) -> dict[str, Any]:
            return snapshot.setdefault(user_id, {F.MVOIP_MB_USED: 0.0, F.VERIFIED_METHODS: []})

        if self.network_reported:
            for row in await db.fetch("SELECT user_id, network FROM policy_network"):
                person(row["user_id"])[F.NETWORK] = row["network"]
        for row in await db.fetch(
            "SELECT user_id, amount FROM policy_usage WHERE month = $1 AND metric = $2",
            this_month(),
            "mvoip_mb",
        ):
            person(row["user_id"])[F.MVOIP_MB_USED] = float(row["amount"] or 0.0)
        cutoff = int((time.time() - retention) * 1000)
        for row in await db.fetch(
            "SELECT user_id, method FROM policy_verified WHERE verified_at > $1", cutoff
        ):
            person(row["user_id"])[F.VERIFIED_METHODS] = [row["method"]]
        for user_id, (_, methods) in self._threepids.items():
            if methods:
                known = person(user_id)[F.VERIFIED_METHODS]
                person(user_id)[F.VERIFIED_METHODS] = sorted(set(known) | set(methods))
        if not self.network_reported:
            for user_id, facts in snapshot.items():
                network = await self.module_network(user_id)
                if network:
                    facts[F.NETWORK] = network
        return snapshot

    @property
    def network_reported(self) -> bool:
        """Whether people's own reports (``!network``) are the network fact's source."""
        return self.settings["network_source"] == "reported"

    async def module_network(self, user_id: str) -> str | None:
        """The network the Synapse module should know for ``user_id``: the reported one,
        or what the fact providers say (asked as for a call)."""
        if self.network_reported:
            return await self.network(user_id)
        network = None
        provided = await self.provided_facts(
            user_id, "call.place", None, {"purpose": "synapse_module"}
        )
        for facts in provided:
            if facts.get(F.NETWORK):
                network = facts[F.NETWORK]
        return network

    async def provided_facts(
        self, actor: str, action: str, target: str | None, context: dict[str, Any]
    ) -> list[Mapping[str, Any]]:
        """What the plugins implementing ``anywhere_policy_gather_facts`` (and, for one
        more release, the deprecated ``anywhere_policy_facts``) give, in call order."""
        found = []
        for hook in ("anywhere_policy_gather_facts", "anywhere_policy_facts"):
            for _, provided in await self.bridge.extensions.call(
                hook,
                bridge=self.bridge,
                actor=actor,
                action=action,
                target=target,
                context=context,
            ):
                if isinstance(provided, Mapping):
                    found.append(provided)
        return found

    async def saw_users(self, day: str, users: list[str]) -> None:
        """People the Synapse module saw active on ``day`` (UTC): counted like those the
        bridge sees itself."""
        current = self._seen_today[0] if time.time() < self._day_ends else ""
        for user_id in users:
            if day == current and user_id in self._seen_today[1]:
                continue
            await self.bridge.db.execute(
                "INSERT INTO policy_active_user (day, user_id) VALUES ($1, $2) "
                "ON CONFLICT (day, user_id) DO NOTHING",
                day,
                user_id,
            )
            if day == current:
                self._seen_today[1].add(user_id)
        if users:
            self._dau = (0.0, self._dau[1])  # count again at the next question

    async def gather(
        self, actor: str, action: str, target: str | None, context: dict[str, Any]
    ) -> dict[str, Any]:
        db = self.bridge.db
        facts: dict[str, Any] = dict(self._subscribers.get(actor, {}))
        network = await self.network(actor) if self.network_reported else None
        if network:
            facts[F.NETWORK] = network
        used = await db.fetchval(
            "SELECT amount FROM policy_usage WHERE user_id = $1 AND month = $2 AND metric = $3",
            actor,
            this_month(),
            "mvoip_mb",
        )
        facts[F.MVOIP_MB_USED] = float(used or 0.0)
        facts[F.VERIFIED_METHODS] = await self.verified_methods(actor)
        facts[F.DAILY_ACTIVE_USERS] = await self.daily_active_users()
        facts[F.PUBLIC_INSTITUTION] = self.is_public_institution(actor, context.get("room_id"))
        extra = context.get("facts")
        if isinstance(extra, dict):
            facts.update(extra)
        for provided in await self.provided_facts(actor, action, target, context):
            facts.update(provided)
        return facts

    async def verified_methods(self, user_id: str, *, ask_homeserver: bool = True) -> list[str]:
        """The ways ``user_id`` is verified; without ``ask_homeserver`` the homeserver's
        3PIDs count only as far as they were looked up before."""
        methods = []
        retention = self.settings["verification"]["retention_days"] * 86400
        row = await self.bridge.db.fetchrow(
            "SELECT method, verified_at FROM policy_verified WHERE user_id = $1", user_id
        )
        if row and time.time() - row["verified_at"] / 1000 < retention:
            methods.append(row["method"])
        if ask_homeserver:
            methods += await self.homeserver_threepids(user_id)
        else:
            methods += (self._threepids.get(user_id) or (0.0, []))[1]
        return sorted(set(methods))

    async def homeserver_threepids(self, user_id: str) -> list[str]:
        """email / msisdn verified by the homeserver, through its admin API (optional)."""
        token = self.settings["verification"]["homeserver_admin_token"]
        if not token:
            return []
        cached = self._threepids.get(user_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        url = f"{self.bridge.info.homeserver_url}/_synapse/admin/v2/users/{user_id}"
        async with self.bridge.http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json(content_type=None) if r.status == 200 else {}
        methods = sorted(
            {
                t.get("medium")
                for t in body.get("threepids", [])
                if t.get("medium") in ("email", "msisdn")
            }
        )
        previous = self._threepids.get(user_id)
        self._threepids[user_id] = (time.monotonic() + 60, methods)
        if previous is None or previous[1] != methods:
            self.feed.touch(user_id)
        return methods

    def is_public_institution(self, user_id: str, room_id: str | None) -> bool:
        return F.is_public_institution(self.settings["public_institutions"], user_id, room_id)

    async def daily_active_users(self) -> int:
        if self._dau[0] > time.monotonic():
            return self._dau[1]
        count = await self.bridge.db.fetchval(
            "SELECT COUNT(*) FROM policy_active_user WHERE day = $1", today()
        )
        self._dau = (time.monotonic() + self.DAU_CACHE_SECONDS, int(count))
        return int(count)

    async def network(self, user_id: str) -> str | None:
        """The network the person last reported (``!network``), if any."""
        return await self.bridge.db.fetchval(
            "SELECT network FROM policy_network WHERE user_id = $1", user_id
        )

    def seen_today(self, user_id: str) -> bool:
        """Already counted today (no write needed); asked for every event."""
        return user_id in self._seen_today[1] and time.time() < self._day_ends

    async def saw_user(self, user_id: str) -> None:
        """Count a person as active today (one write per person per day)."""
        now = time.time()
        if now >= self._day_ends:
            day = today()
            self._seen_today = (day, set())
            self._day_ends = (now // 86400 + 1) * 86400
        day = self._seen_today[0]
        if user_id in self._seen_today[1]:
            return
        self._seen_today[1].add(user_id)
        await self.bridge.db.execute(
            "INSERT INTO policy_active_user (day, user_id) VALUES ($1, $2) "
            "ON CONFLICT (day, user_id) DO NOTHING",
            day,
            user_id,
        )

    async def set_network(self, user_id: str, network: str) -> None:
        await self.bridge.db.execute(
            "INSERT INTO policy_network (user_id, network, reported_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (user_id) DO UPDATE SET network = excluded.network, "
            "reported_at = excluded.reported_at",
            user_id,
            network,
            int(time.time() * 1000),
        )
        self.feed.touch(user_id)  # after the write: the module's next exchange sees it

    async def add_usage(self, user_id: str, metric: str, amount: float) -> None:
        await self.bridge.db.execute(
            "INSERT INTO policy_usage (user_id, month, metric, amount) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (user_id, month, metric) DO UPDATE SET "
            "amount = policy_usage.amount + excluded.amount",
            user_id,
            this_month(),
            metric,
            float(amount),
        )
        self.feed.touch(user_id)
