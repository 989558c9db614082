"""Anywhere's policy rules inside Synapse: a module for ``homeserver.yaml``.

The same rules file the bridge uses is enforced by the homeserver itself, so a person
cannot get around a rule by talking to Synapse directly::

    modules:
      - module: anywhere.policy.synapse_module.AnywherePolicyModule
        config:
          rules_file: /etc/anywhere/policy-rules.yaml
          bridge_url: http://127.0.0.1:29340
          bridge_token: "<operations.token from the bridge's config>"
          facts_refresh_seconds: 2   # how often the facts are brought from the bridge
          facts_max_age_seconds: 60  # facts older than this (bridge down) are unavailable
          breaker_seconds: 30        # after a failed exchange, wait this long to retry
          timeout_seconds: 2         # one exchange with the bridge at most
          fail_open: false           # facts unavailable: refuse (false) or allow (true)
          ignore_users: ["@anywhere_.*:example\\.org"]   # the bridge's own users
          bridge_bot: "@anywhere:example.org"           # talking to it is always allowed
          # last_good_rules_file: <rules_file>.last-good  # the last rules validated

What is checked (Synapse's spam-checker callbacks):

========================  ==============================================================
callback                  action
========================  ==============================================================
``user_may_create_room``  ``group.create``
``user_may_invite``       ``room.invite`` (target: the invitee)
``check_event_for_spam``  ``m.call.invite`` → ``call.place``, ``m.call.answer`` →
                          ``call.answer``, ``m.room.message`` / ``m.room.encrypted`` /
                          ``m.sticker`` / ``m.room.name`` / ``m.room.topic`` /
                          ``m.room.avatar`` / polls → ``room.post``
========================  ==============================================================

Only actions some rule covers are checked; for the others (and for senders matching
``ignore_users``, and events from other servers) the callback returns at once. Facts
are never fetched on an event's path: the module keeps everyone's facts in memory and a
background exchange (``POST {bridge_url}/_anywhere/policy/sync``, see
:mod:`anywhere.policy.fact_sync`) brings the changes every ``facts_refresh_seconds`` and takes to
the bridge the local people seen active today and the module's refusals (for the audit
log, and for a notice to the person in their direct chat with the bot). On a deny or
require_verification the module refuses with ``M_FORBIDDEN`` and this error body::

    {"errcode": "M_FORBIDDEN",
     "error": "<the rule's reason> (policy rule kr-plan: plan_below_mvoip_threshold;
               decision 8ae14d0febd4-1)",
     "org.anywhere.policy.reason": "<the rule's reason>",
     "org.anywhere.policy.rule": "kr-plan",
     "org.anywhere.policy.code": "plan_below_mvoip_threshold",
     "org.anywhere.policy.outcome": "deny",
     "org.anywhere.policy.decision_id": "..."}

Talking to the bridge's bot (``bridge_bot``) is never refused: creating a direct chat
with only the bot, inviting it, and posting in a room whose only other member is the bot
pass, so that a person required to verify (or to switch networks) can always reach it.
Synapse itself never asks about room creation and invites by server admins.

The reason reaches the client through the ``(Codes, dict)`` return value: Synapse 1.163
builds the error JSON as ``{"error": msg, "errcode": code, **dict}``, so the ``error`` key
in the dict wins over its generic "This message has been rejected as probable spam" /
"You are not permitted to create rooms".

The rules file is checked for changes at most once a second (its mtime, size and inode);
a new valid file is put in force (and copied to the last good file), an invalid one is
logged and the old rules stay. Synapse always starts: with an invalid rules file the
module starts with the last rules it validated; with none ever, ``call.place``,
``call.answer`` and ``group.create`` follow ``fail_open`` and everything else passes.

The policy logic (:class:`PolicyGate`, in :mod:`anywhere.policy.synapse_gate`) does not import
Synapse; only :class:`AnywherePolicyModule` does, lazily, so this file can be imported
(and the gate tested) without Synapse installed. Logger: ``anywhere.policy.synapse_module``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from .actions import GROUP_CREATE, ROOM_INVITE, ROOM_POST
from .fact_sync import SYNC_PATH, SyncFailed
from .synapse_gate import (
    EVENT_ACTIONS,
    FIELD_PREFIX,
    ModuleConfig,
    ModuleConfigError,
    PolicyAnswer,
    PolicyGate,
)

__all__ = [
    "EVENT_ACTIONS",
    "FIELD_PREFIX",
    "AnywherePolicyModule",
    "ModuleConfig",
    "ModuleConfigError",
    "PolicyAnswer",
    "PolicyGate",
    "parse_sync_answer",
]

logger = logging.getLogger("anywhere.policy.synapse_module")

ACTIVITY_EVENT_TYPES = frozenset(
    {"m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite", "m.call.answer"}
)
"""Events that count a local person as active today (daily active users)."""
TICK_SECONDS = 0.1
"""How often the background loop looks whether an exchange with the bridge is due."""


class AnywherePolicyModule:
    """The Synapse module: ``module: anywhere.policy.synapse_module.AnywherePolicyModule``."""

    def __init__(self, config: ModuleConfig, api: Any) -> None:
        from synapse.module_api import NOT_SPAM
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        self._api = api
        self._not_spam = NOT_SPAM
        self._reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 2
        self._http = HTTPClient(Agent(reactor, pool=pool))
        self._headers = {
            "Authorization": [f"Bearer {config.bridge_token}"],
            "Content-Type": ["application/json"],
            "Accept": ["application/json"],
        }
        self.config = config
        self.gate = PolicyGate(config, extra_types=config.load_rule_types())
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            check_event_for_spam=self.check_event_for_spam,
        )
        api.looping_background_call(
            self._sync_tick,
            TICK_SECONDS * 1000,
            desc="anywhere_policy_sync",
            run_on_all_instances=True,
        )
        logger.info(
            "Anywhere policy module: rule set %s from %s, facts from %s every %gs",
            self.gate.version,
            config.rules_file,
            config.bridge_url,
            config.facts_refresh_seconds,
        )

    @staticmethod
    def parse_config(config: Any) -> ModuleConfig:
        """Check the module's config at Synapse's start-up: a mistake there stops Synapse
        with a message saying what to fix. The rules file is not checked here: an
        invalid one must not keep Synapse down (see :class:`PolicyGate`)."""
        from synapse.config import ConfigError

        try:
            return ModuleConfig.from_dict(config)
        except ModuleConfigError as exc:
            raise ConfigError(f"Anywhere policy module: {exc}") from exc

    # ------------------------------------------------------------- callbacks

    async def user_may_create_room(self, user_id: str, room_config: dict) -> Any:
        gate = self.gate
        gate.maybe_reload()
        if not gate.covers(GROUP_CREATE):
            return self._not_spam
        invite = room_config.get("invite") or []
        if self._bot_only(invite) and not room_config.get("invite_3pid"):
            return self._not_spam  # a direct chat with the bridge's bot: where people verify
        return self._final(gate.decide(user_id, GROUP_CREATE))

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        gate = self.gate
        gate.maybe_reload()
        if not gate.covers(ROOM_INVITE) or self._bot_only([invitee]):
            return self._not_spam
        return self._final(gate.decide(inviter, ROOM_INVITE, room_id=room_id, target=invitee))

    async def check_event_for_spam(self, event: Any) -> Any:
        gate = self.gate
        gate.maybe_reload()
        sender = event.sender
        event_type = event.type
        if gate.ignored(sender) or not self._api.is_mine(sender):
            return self._not_spam
        if event_type in ACTIVITY_EVENT_TYPES:
            gate.store.saw_active(sender)  # daily active users, counted by the homeserver
        action = gate.action_for_event(event_type)
        if action is None:
            return self._not_spam
        answer = gate.decide(sender, action, room_id=event.room_id)
        if (
            answer is not None
            and not answer.allowed
            and action == ROOM_POST
            and await self._only_with_bot(event.room_id, sender)
        ):
            return self._not_spam
        return self._final(answer)

    # --------------------------------------------------------------- helpers

    def _final(self, answer: PolicyAnswer | None) -> Any:
        """What Synapse gets; the answer is logged and audited only now that it is final."""
        self.gate.conclude(answer)
        if answer is None or answer.allowed:
            return self._not_spam
        from synapse.api.errors import Codes

        return Codes.FORBIDDEN, answer.error_fields()

    def _bot_only(self, users: Iterable[str]) -> bool:
        bot = self.config.bridge_bot
        users = list(users)
        return bot is not None and bool(users) and all(u == bot for u in users)

    async def _only_with_bot(self, room_id: str, sender: str) -> bool:
        """True when the room's other members are only the bridge's bot (a DM with it):
        people must always be able to talk to the bot, e.g. to verify."""
        if self.config.bridge_bot is None:
            return False
        state = await self._api.get_room_state(room_id, [("m.room.member", None)])
        others = [
            key[1]
            for key, ev in state.items()
            if key[1] != sender and ev.content.get("membership") in ("join", "invite")
        ]
        return self._bot_only(others)

    async def _sync_tick(self) -> None:
        """One exchange with the bridge when due (see :class:`anywhere.policy.fact_sync.FactSync`);
        runs in the background, never on an event's path."""
        sync = self.gate.sync
        if not sync.due():
            return
        body, outbox = sync.begin(self.gate.version)
        started = self._reactor.seconds()
        try:
            answer = await self._exchange(body)
        except Exception as exc:  # connection refused, timeout (CancelledError), bad answer
            hung = self._reactor.seconds() - started >= self.config.timeout_seconds / 2
            sync.failed(exc, outbox, hung=hung)
            return
        sync.succeeded(answer, outbox)

    async def _exchange(self, body: dict[str, Any]) -> Any:
        from synapse.module_api import make_deferred_yieldable

        url = f"{self.config.bridge_url}{SYNC_PATH}"
        response = await make_deferred_yieldable(
            self._http.post(
                url,
                data=json.dumps(body).encode(),
                headers=self._headers,
                timeout=self.config.timeout_seconds,
                reactor=self._reactor,
            )
        )
        content = await make_deferred_yieldable(response.content())
        return parse_sync_answer(response.code, content)


def parse_sync_answer(status: int, body: bytes) -> Any:
    """The bridge's answer to an exchange; :class:`SyncFailed` unless ``200`` JSON."""
    if status != 200:
        text = body[:200].decode("utf-8", "replace")
        raise SyncFailed(f"the bridge answered HTTP {status}: {text}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise SyncFailed(f"the bridge's answer is not JSON: {exc}") from exc
