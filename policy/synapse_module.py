"""Anywhere's policy rules inside Synapse: a module for ``homeserver.yaml``.

The same rules file the bridge uses is enforced by the homeserver itself, so a person
cannot get around a rule by talking to Synapse directly::

    modules:
      - module: policy.synapse_module.AnywherePolicyModule
        config:
          rules_file: /etc/anywhere/policy-rules.yaml
          bridge_url: http://127.0.0.1:29340
          bridge_token: "<operations.token from the bridge's config>"
          facts_cache_seconds: 2     # facts per (user, action, room) cached briefly
          fail_open: false           # bridge unreachable: refuse (false) or allow (true)
          ignore_users: ["@anywhere_.*:example\\.org"]   # the bridge's own users
          bridge_bot: "@anywhere:example.org"           # talking to it is always allowed

What is checked (Synapse's spam-checker callbacks):

========================  ==============================================================
callback                  action
========================  ==============================================================
``user_may_create_room``  ``group.create``
``user_may_invite``       ``room.invite`` (target: the invitee)
``check_event_for_spam``  ``m.call.invite`` → ``call.place``, ``m.call.answer`` →
                          ``call.answer``, ``m.room.message`` / ``m.room.encrypted`` /
                          ``m.sticker`` → ``room.post``
========================  ==============================================================

Only actions some rule covers are checked; for the others (and for senders matching
``ignore_users``, and events from other servers) the callback returns at once. For a
checked action the module asks the bridge for the facts (``GET
{bridge_url}/_anywhere/policy/facts?user=...&action=...[&room=...]`` → ``{"facts":
{...}}``), caches them for ``facts_cache_seconds``, evaluates the rules (pure) and, on a
deny or require_verification, refuses with ``M_FORBIDDEN`` and this error body::

    {"errcode": "M_FORBIDDEN",
     "error": "<the rule's reason> (policy rule kr-plan: plan_below_mvoip_threshold)",
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
a new valid file is put in force, an invalid one is logged and the old rules stay.

The policy logic (:class:`PolicyGate`, in :mod:`policy.synapse_gate`) does not import
Synapse; only :class:`AnywherePolicyModule` does, lazily, so this file can be imported
(and the gate tested) without Synapse installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .actions import GROUP_CREATE, ROOM_INVITE, ROOM_POST
from .errors import PolicyConfigError
from .ruleset import load_ruleset
from .rulesfile import read_rules_file
from .synapse_gate import (
    EVENT_ACTIONS,
    FACTS_PATH,
    FIELD_PREFIX,
    FactsUnavailable,
    ModuleConfig,
    ModuleConfigError,
    PolicyAnswer,
    PolicyGate,
    facts_url,
    parse_facts,
)

__all__ = [
    "EVENT_ACTIONS",
    "FIELD_PREFIX",
    "AnywherePolicyModule",
    "FactsUnavailable",
    "ModuleConfig",
    "ModuleConfigError",
    "PolicyAnswer",
    "PolicyGate",
    "facts_url",
    "parse_facts",
]

logger = logging.getLogger(__name__)


class AnywherePolicyModule:
    """The Synapse module: ``module: policy.synapse_module.AnywherePolicyModule``."""

    def __init__(self, config: ModuleConfig, api: Any) -> None:
        from synapse.module_api import NOT_SPAM
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        self._api = api
        self._not_spam = NOT_SPAM
        self._reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        self._http = HTTPClient(Agent(reactor, pool=pool))
        self._headers = {
            "Authorization": [f"Bearer {config.bridge_token}"],
            "Accept": ["application/json"],
        }
        self.config = config
        self.gate = PolicyGate(config, self._fetch, extra_types=config.load_rule_types())
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            check_event_for_spam=self.check_event_for_spam,
        )
        logger.info(
            "Anywhere policy module: rule set %s from %s, facts from %s",
            self.gate.version,
            config.rules_file,
            config.bridge_url,
        )

    @staticmethod
    def parse_config(config: Any) -> ModuleConfig:
        """Check the config and the rules file at Synapse's start-up: a mistake stops
        Synapse with a message saying what to fix."""
        from synapse.config import ConfigError

        try:
            parsed = ModuleConfig.from_dict(config)
            read = read_rules_file(parsed.rules_file)
            load_ruleset(read[0], extra_types=parsed.load_rule_types(), key=parsed.rules_file)
        except (ModuleConfigError, PolicyConfigError) as exc:
            raise ConfigError(f"Anywhere policy module: {exc}") from exc
        return parsed

    # ------------------------------------------------------------- callbacks

    async def user_may_create_room(self, user_id: str, room_config: dict) -> Any:
        self.gate.maybe_reload()
        if not self.gate.covers(GROUP_CREATE):
            return self._not_spam
        invite = room_config.get("invite") or []
        if self._bot_only(invite) and not room_config.get("invite_3pid"):
            return self._not_spam  # a direct chat with the bridge's bot: where people verify
        answer = await self.gate.decide(user_id, GROUP_CREATE)
        return self._answer(answer)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        self.gate.maybe_reload()
        if not self.gate.covers(ROOM_INVITE) or self._bot_only([invitee]):
            return self._not_spam
        answer = await self.gate.decide(inviter, ROOM_INVITE, room_id=room_id, target=invitee)
        return self._answer(answer)

    async def check_event_for_spam(self, event: Any) -> Any:
        gate = self.gate
        gate.maybe_reload()
        action = gate.action_for_event(event.type)
        if action is None:
            return self._not_spam
        sender = event.sender
        if gate.ignored(sender) or not self._api.is_mine(sender):
            return self._not_spam
        answer = await gate.decide(sender, action, room_id=event.room_id)
        if (
            answer is not None
            and not answer.allowed
            and action == ROOM_POST
            and await self._only_with_bot(event.room_id, sender)
        ):
            return self._not_spam
        return self._answer(answer)

    # --------------------------------------------------------------- helpers

    def _answer(self, answer: PolicyAnswer | None) -> Any:
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

    async def _fetch(self, user_id: str, action: str, room_id: str | None) -> dict[str, Any]:
        from synapse.module_api import make_deferred_yieldable

        url = facts_url(self.config.bridge_url, user_id, action, room_id)
        try:
            response = await make_deferred_yieldable(
                self._http.get(
                    url,
                    headers=self._headers,
                    timeout=self.config.timeout_seconds,
                    reactor=self._reactor,
                )
            )
            body = await make_deferred_yieldable(response.content())
        except Exception as exc:  # connection refused, timeout (CancelledError), ...
            raise FactsUnavailable(
                f"GET {self.config.bridge_url}{FACTS_PATH} failed: "
                f"{type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc
        return parse_facts(response.code, body)
