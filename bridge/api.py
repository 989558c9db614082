"""The plugin contract, typed: read this first when you write a plugin.

Every hook that gets ``bridge`` (``anywhere_startup(bridge)``, ``anywhere_web_routes(bridge,
app)``, ...) gets a :class:`Host`: the services below, and nothing else a plugin should
rely on. A handler's :class:`anywhere.bridge.events.EventContext` sends through the event's
context (``ctx.reply``, ``ctx.send``, ``ctx.notice``), with sends that are safe to repeat.

- :class:`Decision` — what ``anywhere_authorize`` returns and ``bridge.authorize(...)``
  answers: ``allowed``, ``reason``, ``rule``.
- ``bridge.permissions`` (:class:`Permissions`) — a person's permission level.
- ``bridge.signer`` (:class:`Signer`) — sign and verify values for a purpose; the key is
  derived inside the runtime, so no plugin holds a token.
- ``bridge.direct_chats`` (:class:`DirectChats`) — whether a room is a direct chat with
  the bot.
- ``bridge.media`` (:class:`Media`) — download a file from the homeserver's media
  repository; the size it accepts for uploads.
- ``bridge.info`` (:class:`BridgeInfo`) — what the bridge is (its bot, its homeserver,
  its command prefix, its own URL).
- ``bridge.settings(name)`` — this plugin's validated section of the config.
- ``bridge.db`` (mautrix ``Database``), ``bridge.http`` (the one ``aiohttp`` session, with
  a default timeout), ``bridge.jobs`` (:class:`JobQueue`), ``bridge.log`` (structlog).
- ``bridge.extensions`` (:class:`Extensions`) — collect what other plugins give to the
  extension hooks your plugin declares in its own hookspecs module.
- :class:`DoctorCheck` — what ``anywhere_doctor`` returns; :class:`QueuedJob` — what a
  job handler gets.

:data:`CONTRACT_VERSION` is the version of this contract (docs/plugins.md, "Contract
version"); a plugin declares the version it needs with ``anywhere_contract = "1.0"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp
    from mautrix.appservice import IntentAPI
    from mautrix.util.async_db import Database

#: ``(major, minor)``: the major number is raised when something plugins use changes
#: incompatibly or goes; the minor number when something is added.
CONTRACT_VERSION: tuple[int, int] = (1, 3)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an action is allowed, why, and which rule said so (None: no rule)."""

    allowed: bool
    reason: str
    rule: str | None = None

    @classmethod
    def allow(cls, reason: str = "no policy rule applies", rule: str | None = None) -> Decision:
        return cls(True, reason, rule)

    @classmethod
    def deny(cls, reason: str, rule: str | None = None) -> Decision:
        return cls(False, reason, rule)

    @classmethod
    def of(cls, answer: Any) -> Decision:
        """``answer`` as a Decision: None (no opinion) allows; an object with ``allowed``
        and ``reason`` (and ``rule`` or ``rule_id``), such as the policy engine's own
        decision, is read as one."""
        if answer is None:
            return cls.allow()
        if isinstance(answer, Decision):
            return answer
        allowed = getattr(answer, "allowed", None)
        if not isinstance(allowed, bool):
            raise TypeError(
                f"anywhere_authorize must return a bridge.Decision or None, found {answer!r}"
            )
        rule = getattr(answer, "rule", None) or getattr(answer, "rule_id", None)
        reason = getattr(answer, "reason", "") or (
            "no policy rule applies" if allowed else "the policy refuses it"
        )
        return cls(allowed, str(reason), None if rule is None else str(rule))


@dataclass(frozen=True)
class DoctorCheck:
    """One line of ``anywhere doctor``, from a plugin's ``anywhere_doctor`` hook.

    ``status`` is ``"ok"``, ``"warn"`` or ``"fail"``; ``fix`` says what to do when it is
    not ok. Make them with :meth:`ok`, :meth:`warn` and :meth:`fail`.
    """

    name: str
    status: str
    text: str
    fix: str = ""

    @classmethod
    def ok(cls, name: str, text: str) -> DoctorCheck:
        return cls(name, "ok", text)

    @classmethod
    def warn(cls, name: str, text: str, fix: str = "") -> DoctorCheck:
        return cls(name, "warn", text, fix)

    @classmethod
    def fail(cls, name: str, text: str, fix: str = "") -> DoctorCheck:
        return cls(name, "fail", text, fix)


@runtime_checkable
class QueuedJob(Protocol):
    """What a job handler gets (``anywhere_job_handlers``): the payload as enqueued, and
    which try this is (1 on the first)."""

    @property
    def kind(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...

    @property
    def attempt(self) -> int: ...


class BadSignature(ValueError):
    """A signed value was changed, made for another purpose, or expired."""


class MediaError(Exception):
    """The homeserver would not give a media file; ``status`` is its HTTP status.

    A status of 500 or more is the homeserver's trouble (worth trying again later);
    others (404, 403, ...) will not change by trying again."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def temporary(self) -> bool:
        return self.status >= 500


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """What the bridge is: read-only facts from its config, without its secrets."""

    bot_user_id: str
    homeserver_url: str
    homeserver_domain: str
    command_prefix: str
    #: Where the bridge's web server listens (``http://host:port``); a plugin with its own
    #: public URL setting prefers that.
    bridge_url: str
    data_dir: Path
    ghost_prefix: str
    #: The folder of the config file: a relative path in a plugin's settings is read from
    #: there (since contract 1.1).
    config_dir: Path


@runtime_checkable
class Permissions(Protocol):
    """``bridge.permissions``: who may do what, from ``bridge.permissions`` and
    ``bridge.command_levels`` in the config."""

    def level(self, user_id: str) -> int:
        """0 (``none``: may not use the bridge), 1 (``user``) or 2 (``admin``)."""

    def level_name(self, user_id: str) -> str:
        """The level's name: ``none``, ``user`` or ``admin``."""

    def at_least(self, user_id: str, level: str) -> bool:
        """Whether ``user_id`` has ``level`` (``user``, ``admin``) or more."""

    def command_level(self, command: str) -> str:
        """The level the bot command ``command`` needs (``user`` for one it does not know)."""


@runtime_checkable
class Signer(Protocol):
    """``bridge.signer``: values signed for a purpose (Datasette's ``sign``/``unsign``).

    Name the purpose after your plugin (``"myplugin.invite"``): a value signed for one
    purpose never verifies for another."""

    def sign(self, value: Any, purpose: str) -> str:
        """A URL-safe token carrying ``value`` (anything JSON can hold), signed."""

    def unsign(self, token: str, purpose: str) -> Any:
        """The value inside ``token``; raises :class:`BadSignature` when it was changed or
        signed for another purpose."""

    def signature(self, message: str, purpose: str) -> str:
        """A signature alone (32 hex digits) for a message the caller keeps itself, for
        example the parts of a link's path."""

    def verify(self, message: str, purpose: str, signature: str) -> bool:
        """Whether ``signature`` is :meth:`signature` of ``message`` (in constant time)."""

    def key(self, purpose: str) -> bytes:
        """A secret key (32 bytes) for ``purpose``, the same at every start, for a plugin
        that must key something itself — a keyed hash it compares later, such as the
        policy's hashes of phone numbers (since contract 1.1). Keep it in memory only."""


@runtime_checkable
class DirectChats(Protocol):
    """``bridge.direct_chats``: the bot's direct chats with people."""

    async def is_direct(self, room_id: str, with_user: str | None = None) -> bool:
        """Whether ``room_id`` is a direct chat between the bot and one person (and, with
        ``with_user`` (since contract 1.1), whether that person is ``with_user``)."""

    async def direct_chat_with(self, user_id: str) -> str | None:
        """The room of the bot's direct chat with ``user_id``, if there is one."""

    async def open_with(self, user_id: str) -> str:
        """The room of the bot's direct chat with ``user_id``; when there is none, the bot
        opens one (unencrypted, ``user_id`` invited) and remembers it (since contract
        1.1). For what concerns one person only: never answer it in a room others read."""


@runtime_checkable
class Media(Protocol):
    """``bridge.media``: the homeserver's media repository, as the bot."""

    def download(self, mxc: str) -> AsyncIterator[bytes]:
        """The content of ``mxc://server/id`` in chunks; raises :class:`MediaError`."""

    def download_content(self, content: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The plain bytes of a file message's ``content``, from its ``url`` or, in
        encrypted rooms, its ``file`` (decrypted; its SHA-256 checked before the last chunk
        is given). Raises :class:`MediaError` (status 400: a malformed ``file``, 422: the
        hash does not match; the message says which) (since contract 1.2)."""

    async def upload(
        self,
        room_id: str,
        data: bytes | AsyncIterable[bytes],
        *,
        intent: IntentAPI,
        mime_type: str | None = None,
        filename: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Upload a file to post into ``room_id`` as ``intent`` (streamed); returns the
        content fields pointing at it — ``{"url": mxc}``, or ``{"file": {...}}`` when the
        room is encrypted (the file encrypted on the way) — to merge into the message
        (since contract 1.2)."""

    async def upload_limit(self) -> int | None:
        """The largest upload the homeserver accepts in bytes (None: it does not say)."""


@runtime_checkable
class JobQueue(Protocol):
    """``bridge.jobs``: durable background jobs (``anywhere_job_handlers``)."""

    async def enqueue(self, kind: str, payload: dict[str, Any], *, key: str) -> bool:
        """Store a job; True if new (False: ``key`` is queued already)."""


@runtime_checkable
class Extensions(Protocol):
    """``bridge.extensions``: what plugins give to extension hooks."""

    def collect(
        self,
        hook_name: str,
        what: str,
        taken: dict[str, str] | None = None,
        *,
        key: Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> dict[str, tuple[str, Any]]:
        """``{name: (plugin, value)}`` from a hook whose implementations return
        ``{name: value}``; a name given twice (after ``key``, e.g. ``str.lower``) stops
        start-up naming both plugins. ``what`` names the names in that message."""

    async def call(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """``[(plugin, answer)]`` from every plugin implementing ``hook_name``, awaited
        when the answer is awaitable, in call order: for extension hooks whose answers
        are merged or handled by their owner (since contract 1.1)."""


class Host(Protocol):
    """What hooks get as ``bridge``: the services above."""

    info: BridgeInfo
    permissions: Permissions
    signer: Signer
    direct_chats: DirectChats
    media: Media
    extensions: Extensions
    log: Any  # a structlog logger: bind plugin=..., room_id=..., event_id=...

    @property
    def db(self) -> Database: ...

    @property
    def http(self) -> aiohttp.ClientSession: ...

    @property
    def jobs(self) -> JobQueue: ...

    @property
    def bot(self) -> IntentAPI:
        """The bot's own Matrix API (mautrix ``IntentAPI``)."""

    def intent(self, user_id: str) -> IntentAPI:
        """The Matrix API as ``user_id``, one of this bridge's ghost users."""

    def is_ours(self, user_id: str) -> bool:
        """True for the bot and this bridge's ghost users (do not answer them)."""

    def settings(self, plugin: str) -> dict[str, Any]:
        """The validated section ``plugins.settings.<plugin>`` of the config."""

    async def authorize(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Decision:
        """Ask the policy whether ``actor`` may do ``action``; allowed when none answers."""

    async def record_usage(self, user_id: str, metric: str, amount: float) -> None:
        """Report what a person used (``mvoip_mb``), for rules with monthly caps."""


def parse_contract_version(value: Any) -> tuple[int, int]:
    """``"1.0"``, ``"1"``, ``1`` or ``(1, 0)`` as ``(1, 0)``; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return (value, 0)
    if isinstance(value, str):
        parts = value.strip().split(".")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            return (int(parts[0]), int(parts[1]) if len(parts) == 2 else 0)
    if isinstance(value, tuple) and len(value) == 2 and all(type(p) is int for p in value):
        return (value[0], value[1])
    raise ValueError(value)


def contract_problem(plugin: str, needed: Any) -> str | None:
    """Why this Anywhere cannot run a plugin that declares ``anywhere_contract = needed``,
    or None when it can."""
    ours = ".".join(map(str, CONTRACT_VERSION))
    try:
        major, minor = parse_contract_version(needed)
    except ValueError:
        return (
            f"plugin {plugin!r} declares anywhere_contract = {needed!r}, which is not a "
            f'contract version: write it as "MAJOR.MINOR", for example "{ours}"'
        )
    if (major, minor) > CONTRACT_VERSION and major >= CONTRACT_VERSION[0]:
        return (
            f"plugin {plugin!r} needs the Anywhere plugin contract {major}.{minor}, and this "
            f"Anywhere offers {ours}, which is older: upgrade Anywhere (pip install -U "
            "anywhere-bridge) or install a version of the plugin made for this one"
        )
    if major < CONTRACT_VERSION[0]:
        return (
            f"plugin {plugin!r} was made for the Anywhere plugin contract {major}.{minor}, and "
            f"this Anywhere offers {ours}, which changed what plugins get (docs/plugins.md, "
            '"Contract version"): upgrade the plugin'
        )
    return None
