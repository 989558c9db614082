"""The policy plugin: puts the engine in ``policy/`` to work inside the bridge.

It answers ``anywhere_authorize`` (facts first, then the pure rules, then the audit log),
keeps the facts the bridge learns (networks people report, usage, verification, daily
active users), reloads rules on ``!policy reload`` and SIGHUP (the old rules stay in
force if the new ones are invalid), and serves facts to the Synapse module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from anywhere.bridge import Decision, hookimpl
from anywhere.bridge.errors import PluginLoadError
from anywhere.bridge.web import require_operator
from anywhere.policy import Engine, Request, load_ruleset
from anywhere.policy.audit import AuditLog, parse_since
from anywhere.policy.errors import PolicyConfigError
from anywhere.policy.rulesfile import read_rules_file
from anywhere.policy.verification import key_id

from . import commands
from .facts import FactGatherer, read_subscribers
from .module_link import BadExchange, ModuleLink
from .schema import MIGRATIONS
from .senders import dev_sender_warning, prune_outbox
from .settings import SECTION

if TYPE_CHECKING:
    from anywhere.bridge.api import Host
    from anywhere.policy import Rule


log = structlog.get_logger("anywhere.policy")
PRUNE_EVERY_SECONDS = 3600
#: The purpose of the runtime's key (``bridge.signer.key``) that hashes phone numbers and
#: codes when ``verification.salt`` is empty.
VERIFICATION_KEY_PURPOSE = "anywhere.policy.verification"
ACTIVITY_EVENT_TYPES = (
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.call.answer",
    "org.anywhere.network",
)


def collect_rule_classes(bridge: Host) -> dict[str, type[Rule]]:
    """``{type name: rule class}`` from every plugin's ``anywhere_policy_rule_classes``
    (and, for one more release, the deprecated ``anywhere_policy_rule_types``)."""
    classes: dict[str, type[Rule]] = {}
    taken: dict[str, str] = {}
    for hook in ("anywhere_policy_rule_classes", "anywhere_policy_rule_types"):
        for type_name, (name, cls) in bridge.extensions.collect(hook, "rule type", taken).items():
            if not isinstance(type_name, str) or not isinstance(cls, type):
                raise PluginLoadError(
                    f"plugin {name!r}: {hook} must map rule type names to subclasses of "
                    f"policy.Rule, found {type_name!r}: {cls!r}"
                )
            classes[type_name], taken[type_name] = cls, name
    return classes


class PolicyPlugin:
    anywhere_contract = "1.1"

    def __init__(self) -> None:
        self.bridge: Host | None = None
        self.engine = Engine()
        self.facts: FactGatherer | None = None
        self.audit: AuditLog | None = None
        self.link: ModuleLink | None = None
        self.extra_types: dict[str, type[Rule]] = {}
        self._prune_task: asyncio.Task | None = None

    # ----- set-up -----
    @hookimpl
    def anywhere_hookspecs(self):
        from . import hookspecs

        return hookspecs

    @hookimpl
    def anywhere_config_section(self):
        return SECTION

    @hookimpl
    def anywhere_migrations(self):
        return MIGRATIONS

    @hookimpl
    async def anywhere_startup(self, bridge: Host) -> None:
        self.bridge = bridge
        self.facts = FactGatherer(bridge, self.settings)
        self.audit = AuditLog(bridge.db)
        self.link = ModuleLink(bridge, self.settings, self.facts, self.audit)
        self._warn_about_verification()
        self.extra_types = collect_rule_classes(bridge)
        self.reload()  # invalid rules at start-up stop the bridge with the reason
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._prune_task = asyncio.create_task(self._prune_forever())

    @hookimpl
    async def anywhere_shutdown(self, bridge: Host) -> None:
        if self.link:
            await self.link.close()
        if self._prune_task:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task

    @property
    def settings(self) -> dict[str, Any]:
        return self.bridge.settings("policy")

    def _path(self, key: str) -> Path | None:
        value = self.settings[key]
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.bridge.info.config_dir / path

    def reload(self) -> str:
        """Re-read the rules and the subscriber directory; raises PolicyConfigError and
        keeps the rules in force when the new ones are invalid. Returns the version."""
        rules_path = self._path("rules_file")
        rules, version = read_rules_file(rules_path) if rules_path else ([], "none")
        key = f"{rules_path}" if rules_path else "plugins.settings.policy.rules_file"
        # Everything is checked before anything is put in force.
        ruleset = load_ruleset(rules, extra_types=self.extra_types, key=key, version=version)
        carriers = {c for r in ruleset for c in getattr(r, "carriers", None) or ()}
        subscribers = read_subscribers(self._path("subscribers_file"), carriers)
        self.engine.reload(rules, extra_types=self.extra_types, key=key, version=version)
        self.facts.subscribers = subscribers
        log.info(
            "policy rules in force", version=version, rules=len(rules), subscribers=len(subscribers)
        )
        if not rules:
            log.warning(
                "no policy rules: nothing is restricted, every action is allowed",
                rules_file=str(rules_path) if rules_path else None,
            )
        return version

    def _on_sighup(self) -> None:
        try:
            self.reload()
        except PolicyConfigError as exc:
            log.error("new policy rules are invalid; the old ones stay in force", error=str(exc))

    async def _prune_forever(self) -> None:
        """Keep only what is needed: audit, verification records, activity, past retention."""
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("pruning old policy records failed")
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    async def prune(self, now: float | None = None) -> None:
        now = now or time.time()
        db = self.bridge.db
        await self.audit.prune(now - self.settings["audit_retention_days"] * 86400)
        retention = self.settings["verification"]["retention_days"] * 86400
        await db.execute(
            "DELETE FROM policy_verified WHERE verified_at < $1", int((now - retention) * 1000)
        )
        outbox = self.settings["verification"]["outbox"]
        if outbox:
            prune_outbox(Path(outbox), now - self.settings["verification"]["code_ttl"])
        day = time.strftime("%Y-%m-%d", time.gmtime(now - 2 * 86400))
        await db.execute("DELETE FROM policy_active_user WHERE day < $1", day)
        notice_period = self.settings["refusal_notice_minutes"] * 60
        await db.execute(
            "DELETE FROM policy_notice WHERE sent_at < $1", int((now - notice_period) * 1000)
        )

    # ----- deciding -----
    @hookimpl
    async def anywhere_authorize(
        self, bridge: Host, actor: str, action: str, target: str | None, context: dict[str, Any]
    ) -> Decision:
        decision = await self.decide(actor, action, target, context)
        return Decision(decision.allowed, decision.reason, decision.rule_id)

    async def decide(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        context: dict[str, Any] | None = None,
    ):
        context = dict(context or {})
        # No rule covers the action: nothing reads the person's facts, so they are not
        # looked up (the drive's HTTP gate and WebDAV ask on every request).
        if self.engine.ruleset.plan(action).entries:
            facts = await self.facts.gather(actor, action, target, context)
        else:
            facts = {}
        request = Request(
            actor,
            action,
            target,
            room_id=context.get("room_id"),
            context={k: v for k, v in context.items() if k != "facts"},
            facts=facts,
        )
        decision = self.engine.evaluate(request)
        await self.audit.record(request, decision)
        for verdict in decision.dry_run_verdicts:
            log.info(
                "dry-run rule would have decided",
                rule=verdict.rule_id,
                outcome=str(verdict.outcome),
                actor=actor,
                action=action,
                decision_id=decision.decision_id,
            )
        return decision

    def explain(self, actor: str, action: str, facts: dict[str, Any], room_id: str | None):
        return self.engine.explain(Request(actor, action, None, room_id=room_id, facts=facts))

    def verification_keys(self) -> dict[str, bytes]:
        """The keys phone numbers and codes are hashed with, by :func:`key_id`: the
        configured ``verification.salt`` first (new hashes use it), then the runtime's
        key for the purpose ``anywhere.policy.verification`` (id ""; the key derived from
        ``appservice.hs_token`` that this plugin made itself before contract 1.1), with
        which records made before the salt was set keep being checked — they are hashed
        again with the new key when the person next verifies."""
        keys: dict[str, bytes] = {}
        configured = self.settings["verification"]["salt"]
        if configured:
            salt = hashlib.sha256(configured.encode()).digest()
            keys[key_id(salt)] = salt
        keys[""] = self.bridge.signer.key(VERIFICATION_KEY_PURPOSE)
        return keys

    def _warn_about_verification(self) -> None:
        verification = self.settings["verification"]
        if not verification["salt"]:
            log.warning(
                "verification.salt is empty: phone numbers are hashed with a key derived "
                "from appservice.hs_token, which registration.yaml holds too — whoever has "
                "it and the database can find the numbers. Set a random secret there "
                "(`anywhere init` writes one); verified people stay verified."
            )
        warning = dev_sender_warning(
            verification, self.bridge.info.homeserver_domain, self.bridge.info.homeserver_url
        )
        if warning:
            log.warning(warning)

    # ----- the rest of the bridge -----
    @hookimpl
    def anywhere_commands(self):
        return commands.build(self)

    @hookimpl
    def anywhere_event_handlers(self):
        # what counts as using the service (daily active users), and network reports
        return {t: self._on_event for t in ACTIVITY_EVENT_TYPES}

    def _on_event(self, event, ctx):
        """Runs for every event: a coroutine only when there is something to write."""
        sender = event.sender
        if event.ephemeral or not sender or self.bridge.is_ours(sender):
            return None
        if self.facts.seen_today(sender) and event.type != "org.anywhere.network":
            return None
        return self._record(event)

    async def _record(self, event) -> None:
        if not self.facts.seen_today(event.sender):
            await self.facts.saw_user(event.sender)
        if (
            event.type == "org.anywhere.network"
            and event.state_key == event.sender
            and self.facts.network_reported
        ):
            network = event.content.get("network")
            if network in commands.NETWORKS:
                await self.facts.set_network(event.sender, network)

    @hookimpl
    async def anywhere_policy_record_usage(
        self, bridge: Host, user_id: str, metric: str, amount: float
    ) -> None:
        if metric == "mvoip_mb" and await self.facts.module_network(user_id) == "wifi":
            return  # calls on Wi-Fi use no mobile data (an unknown network counts)
        await self.facts.add_usage(user_id, metric, amount)

    @hookimpl
    def anywhere_web_routes(self, bridge: Host, app: web.Application) -> None:
        app.router.add_get("/_anywhere/policy/facts", self._facts_endpoint)
        app.router.add_post("/_anywhere/policy/sync", self._sync_endpoint)
        app.router.add_get("/_anywhere/policy/audit", self._audit_endpoint)

    async def _audit_endpoint(self, request: web.Request) -> web.StreamResponse:
        """Decisions of the bridge and the Synapse module as JSON lines, newest first
        (operator token): ?user=@a:b&since=7d&limit=1000."""
        require_operator(request)
        query = request.query
        user = query.get("user")
        try:
            if user is not None and (not user.startswith("@") or ":" not in user):
                raise ValueError(f"user: {user!r} is not a user ID (@name:server)")
            since = parse_since(query["since"], time.time()) if "since" in query else None
            limit = int(query.get("limit", "1000"))
            if not 1 <= limit <= 100_000:
                raise ValueError(f"limit: expected 1 to 100000, found {limit}")
        except ValueError as exc:
            return web.json_response({"errcode": "M_INVALID_PARAM", "error": str(exc)}, status=400)
        entries = await self.audit.recent(actor=user, since=since, limit=limit)
        body = "".join(
            json.dumps({**entry.to_json(), "source": entry.source}, ensure_ascii=False) + "\n"
            for entry in entries
        )
        return web.Response(text=body, content_type="application/x-ndjson")

    async def _sync_endpoint(self, request: web.Request) -> web.Response:
        """The Synapse module's exchange (operator token): see plugins/policy/module_link."""
        require_operator(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            answer = await self.link.exchange(body)
        except BadExchange as exc:
            return web.json_response(
                {"errcode": "M_BAD_JSON", "error": f"policy sync: {exc}"}, status=400
            )
        return web.json_response(answer)

    async def _facts_endpoint(self, request: web.Request) -> web.Response:
        """A person's facts as the bridge would decide with them (operator token):
        ?user=@a:b&action=call.place[&room=!r:b] — for operators checking what the rules
        see. (The Synapse module gets its facts through the exchange, ``/sync``.)"""
        require_operator(request)
        user, action = request.query.get("user"), request.query.get("action", "")
        if not user or not user.startswith("@") or ":" not in user:
            return web.json_response(
                {"errcode": "M_INVALID_PARAM", "error": "?user=@name:server is required"},
                status=400,
            )
        room_id = request.query.get("room")
        facts = await self.facts.gather(user, action, None, {"room_id": room_id} if room_id else {})
        return web.json_response({"facts": facts, "ruleset_version": self.engine.ruleset.version})

    @hookimpl
    def anywhere_cli(self, subparsers) -> None:
        parser = subparsers.add_parser("policy", help="work with policy rules")
        sub = parser.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
        test = sub.add_parser(
            "test",
            help="run table-driven cases against a rules file; "
            "exits 1 on a mismatch, 2 on an invalid file",
        )
        test.add_argument("rules", help="the rules file (YAML)")
        test.add_argument("cases", help="the cases file (YAML)")
        test.add_argument("-v", "--verbose", action="store_true", help="show passing cases too")
        test.set_defaults(func=_policy_test)


def _policy_test(args) -> int:
    from anywhere.policy.cases import run_cases

    try:
        report = run_cases(args.rules, args.cases)
    except PolicyConfigError as exc:
        print(f"error: {exc}")
        return 2
    print(report.format(verbose=args.verbose))
    return report.exit_code


plugin = PolicyPlugin()
