"""The Synapse module's logic without Synapse: config, which events are checked, facts
and their cache, reload of the rules file, fail open/closed, the error fields.

The module inside a real Synapse is tested in ``test_synapse_module_synapse.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from policy.synapse_module import (
    FIELD_PREFIX,
    FactsUnavailable,
    ModuleConfig,
    ModuleConfigError,
    PolicyGate,
    facts_url,
    parse_facts,
)

KIM = "@kim:example.kr"
SKT_45000 = {"carrier": "SKT", "carrier_country": "KR", "plan_price": 45000, "plan_currency": "KRW"}
KR_PLAN = {
    "type": "plan_threshold",
    "id": "kr-plan",
    "carriers": ["SKT"],
    "thresholds": {"3g": 54000, "lte": 52000},
    "currency": "KRW",
}
REAL_NAME = {
    "type": "require_verified",
    "id": "real-name",
    "actions": ["group.create", "room.post"],
    "methods": ["code"],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Facts:
    """A fact source standing in for the bridge: counts calls, can fail."""

    def __init__(self, facts: dict | None = None) -> None:
        self.facts = dict(facts or {})
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail: Exception | None = None

    async def __call__(self, user: str, action: str, room: str | None) -> dict:
        self.calls.append((user, action, room))
        if self.fail is not None:
            raise self.fail
        return dict(self.facts)


def write_rules(path: Path, rules: list[dict]) -> None:
    path.write_text(yaml.safe_dump(rules), "utf-8")
    # A later write in the same second must still be seen as a change.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (_bump())))


_counter = [0]


def _bump() -> int:
    _counter[0] += 1
    return _counter[0]


def make_gate(tmp_path: Path, rules: list[dict], facts: Facts, **options) -> PolicyGate:
    clock = options.pop("clock", None) or Clock()
    path = tmp_path / "rules.yaml"
    write_rules(path, rules)
    config = ModuleConfig.from_dict(
        {
            "rules_file": str(path),
            "bridge_url": "http://127.0.0.1:1/",
            "bridge_token": "secret",
            **options,
        }
    )
    return PolicyGate(config, facts, clock=clock)


# ----------------------------------------------------------------- config


def test_config_defaults_and_normalisation() -> None:
    config = ModuleConfig.from_dict(
        {"rules_file": "/r.yaml", "bridge_url": "http://h:1/", "bridge_token": "t"}
    )
    assert config.bridge_url == "http://h:1"
    assert config.facts_cache_seconds == 2.0
    assert config.fail_open is False
    assert config.ignore_users == ()


def test_config_reports_every_problem() -> None:
    with pytest.raises(ModuleConfigError) as info:
        ModuleConfig.from_dict(
            {
                "bridge_url": "127.0.0.1:29340",
                "bridge_token": "",
                "fail_open": "no",
                "facts_cache_seconds": -1,
                "ignore_users": ["@bad(:x"],
                "typo": 1,
            }
        )
    message = str(info.value)
    for part in (
        "rules_file: required",
        "bridge_url: expected an http(s) URL",
        "bridge_token: expected a non-empty string",
        "fail_open: expected true or false",
        "facts_cache_seconds: expected a number",
        "ignore_users[0]: invalid regex",
        "typo: unknown option",
    ):
        assert part in message


def test_parse_config_turns_problems_into_synapse_config_errors(tmp_path: Path) -> None:
    pytest.importorskip("synapse")
    from synapse.config import ConfigError

    from policy.synapse_module import AnywherePolicyModule

    bad = tmp_path / "rules.yaml"
    bad.write_text("- type: plan_treshold\n", "utf-8")
    with pytest.raises(ConfigError, match="did you mean 'plan_threshold'"):
        AnywherePolicyModule.parse_config(
            {"rules_file": str(bad), "bridge_url": "http://h:1", "bridge_token": "t"}
        )
    with pytest.raises(ConfigError, match="bridge_token: required"):
        AnywherePolicyModule.parse_config({"rules_file": str(bad), "bridge_url": "http://h"})
    good = tmp_path / "good.yaml"
    write_rules(good, [KR_PLAN])
    parsed = AnywherePolicyModule.parse_config(
        {"rules_file": str(good), "bridge_url": "http://h:1", "bridge_token": "t"}
    )
    assert parsed.rules_file == str(good)


def test_facts_url_and_answer() -> None:
    url = facts_url("http://b:1", "@kim:example.kr", "call.place", "!r:x")
    assert (
        url
        == "http://b:1/_anywhere/policy/facts?user=%40kim%3Aexample.kr&action=call.place&room=%21r%3Ax"
    )
    assert parse_facts(200, b'{"facts": {"network": "3g"}, "ruleset_version": "x"}') == {
        "network": "3g"
    }
    for status, body in ((401, b'{"error": "no"}'), (200, b"nope"), (200, b'{"x": 1}')):
        with pytest.raises(FactsUnavailable):
            parse_facts(status, body)


# -------------------------------------------------------------- decisions


async def test_carrier_rule_denies_with_reason_and_fields(tmp_path: Path) -> None:
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(tmp_path, [KR_PLAN], facts)
    answer = await gate.decide(KIM, "call.place", room_id="!room:example.kr")
    assert not answer.allowed
    assert answer.rule_id == "kr-plan" and answer.code == "plan_below_mvoip_threshold"
    assert facts.calls == [(KIM, "call.place", "!room:example.kr")]
    fields = answer.error_fields()
    assert fields[FIELD_PREFIX + "rule"] == "kr-plan"
    assert fields[FIELD_PREFIX + "code"] == "plan_below_mvoip_threshold"
    assert fields[FIELD_PREFIX + "outcome"] == "deny"
    assert "54,000 KRW" in fields[FIELD_PREFIX + "reason"]
    assert fields["error"].startswith(fields[FIELD_PREFIX + "reason"])
    assert "kr-plan" in fields["error"]

    facts.facts["network"] = "wifi"
    gate._cache.clear()
    assert (await gate.decide(KIM, "call.place")).allowed


async def test_regulation_vetoes_the_block(tmp_path: Path) -> None:
    facts = Facts({"carrier": "AT&T", "carrier_country": "US", "network": "3g"})
    wifi_only = {"type": "wifi_only", "id": "att-facetime", "carriers": ["AT&T"]}
    gate = make_gate(tmp_path, [wifi_only], facts)
    assert (await gate.decide(KIM, "call.place")).code == "wifi_only"
    gate = make_gate(tmp_path, [wifi_only, {"type": "fcc_2010_no_blocking", "id": "us-fcc"}], facts)
    answer = await gate.decide(KIM, "call.place")
    assert answer.allowed and answer.code == "carrier_block_vetoed" and answer.rule_id == "us-fcc"


async def test_identity_rule_requires_verification(tmp_path: Path) -> None:
    facts = Facts({"verified_methods": []})
    gate = make_gate(tmp_path, [REAL_NAME], facts)
    answer = await gate.decide(KIM, "group.create")
    assert answer.outcome == "require_verification" and not answer.allowed
    assert "!verify" in answer.reason
    facts.facts["verified_methods"] = ["code"]
    gate._cache.clear()
    assert (await gate.decide(KIM, "group.create")).allowed


async def test_uncovered_actions_and_event_types_are_skipped_without_facts(
    tmp_path: Path,
) -> None:
    facts = Facts(SKT_45000)
    gate = make_gate(tmp_path, [KR_PLAN], facts)
    assert gate.action_for_event("m.call.invite") == "call.place"
    assert gate.action_for_event("m.call.answer") == "call.answer"
    assert gate.action_for_event("m.room.message") is None  # no rule covers room.post
    assert gate.action_for_event("m.reaction") is None
    assert await gate.decide(KIM, "group.create") is None
    assert await gate.decide(KIM, "room.invite") is None
    assert facts.calls == []


async def test_ignored_users_are_not_checked(tmp_path: Path) -> None:
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(
        tmp_path, [KR_PLAN], facts, ignore_users=["@anywhere:example\\.kr", "@anywhere_.*"]
    )
    assert gate.ignored("@anywhere:example.kr")
    assert gate.ignored("@anywhere_kakao_123:example.kr")
    assert not gate.ignored(KIM)
    assert await gate.decide("@anywhere_kakao_123:example.kr", "call.place") is None
    assert facts.calls == []


async def test_facts_are_cached_per_user_action_and_room(tmp_path: Path) -> None:
    clock = Clock()
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(tmp_path, [KR_PLAN, REAL_NAME], facts, clock=clock)
    for _ in range(3):
        await gate.decide(KIM, "call.place", room_id="!a:x")
    await gate.decide(KIM, "call.place", room_id="!b:x")
    await gate.decide(KIM, "room.post", room_id="!a:x")
    assert len(facts.calls) == 3
    clock.now += 2.5
    await gate.decide(KIM, "call.place", room_id="!a:x")
    assert len(facts.calls) == 4


async def test_no_cache_when_zero(tmp_path: Path) -> None:
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(tmp_path, [KR_PLAN], facts, facts_cache_seconds=0)
    await gate.decide(KIM, "call.place")
    await gate.decide(KIM, "call.place")
    assert len(facts.calls) == 2


async def test_bridge_unreachable_fails_closed_by_default(tmp_path: Path) -> None:
    facts = Facts()
    facts.fail = FactsUnavailable("connection refused")
    gate = make_gate(tmp_path, [KR_PLAN], facts)
    answer = await gate.decide(KIM, "call.place")
    assert not answer.allowed and answer.code == "policy_facts_unavailable"
    assert answer.rule_id is None
    assert "unreachable" in answer.error_fields()["error"]
    # Failures are not cached: the next request asks again.
    facts.fail = None
    facts.facts = {**SKT_45000, "network": "wifi"}
    assert (await gate.decide(KIM, "call.place")).allowed


async def test_bridge_unreachable_fail_open(tmp_path: Path) -> None:
    facts = Facts()
    facts.fail = FactsUnavailable("timed out")
    gate = make_gate(tmp_path, [KR_PLAN], facts, fail_open=True)
    answer = await gate.decide(KIM, "call.place")
    assert answer.allowed and answer.code == "fail_open"


# ------------------------------------------------------------------ reload


async def test_rules_file_is_reloaded_at_most_once_a_second(tmp_path: Path) -> None:
    clock = Clock()
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(tmp_path, [KR_PLAN], facts, clock=clock)
    old = gate.version
    assert gate.action_for_event("m.room.message") is None

    write_rules(Path(gate.config.rules_file), [KR_PLAN, REAL_NAME])
    clock.now += 0.5
    gate.maybe_reload()
    assert gate.version == old  # not checked yet
    clock.now += 0.6
    gate.maybe_reload()
    assert gate.version != old
    assert gate.action_for_event("m.room.message") == "room.post"
    assert gate.covers("group.create")


async def test_invalid_new_rules_keep_the_old_set(tmp_path: Path, caplog) -> None:
    clock = Clock()
    facts = Facts({**SKT_45000, "network": "3g"})
    gate = make_gate(tmp_path, [KR_PLAN], facts, clock=clock)
    old = gate.version
    path = Path(gate.config.rules_file)

    path.write_text("- type: plan_treshold\n", "utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 5_000_000_000))
    clock.now += 5
    with caplog.at_level("ERROR", logger="policy.synapse_module"):
        gate.maybe_reload()
    assert gate.version == old
    assert "plan_threshold" in gate.reload_error
    assert "stays in force" in caplog.text
    assert (await gate.decide(KIM, "call.place")).code == "plan_below_mvoip_threshold"

    # A deleted file is an error too; the old rules still decide.
    path.unlink()
    clock.now += 5
    gate.maybe_reload()
    assert gate.version == old and gate.reload_error

    # Fixed: put in force.
    write_rules(path, [{"type": "no_blocking"}])
    clock.now += 5
    gate.maybe_reload()
    assert gate.version != old and gate.reload_error is None
    assert (await gate.decide(KIM, "call.place")).allowed


async def test_no_facts_are_fetched_for_people_no_rule_can_apply_to(tmp_path: Path) -> None:
    scoped = {**REAL_NAME, "scope": {"users": ["@*:ministry.example"]}}
    rooms = {**REAL_NAME, "id": "rooms", "scope": {"rooms": ["!gov*"]}}
    public = {**REAL_NAME, "id": "public", "scope": {"public_institution": True}}
    facts = Facts({"verified_methods": []})
    gate = make_gate(tmp_path, [scoped, rooms], facts)
    assert await gate.decide(KIM, "group.create") is None
    assert await gate.decide(KIM, "room.post", room_id="!other:x") is None
    assert facts.calls == []
    assert not (await gate.decide("@lee:ministry.example", "group.create")).allowed
    assert not (await gate.decide(KIM, "room.post", room_id="!gov1:x")).allowed
    # public_institution is a fact: it has to be fetched to know.
    gate = make_gate(tmp_path, [public], facts)
    answer = await gate.decide(KIM, "room.post", room_id="!other:x")
    assert answer is not None and answer.allowed


async def test_an_unreachable_bridge_is_logged_once_per_interval(tmp_path: Path, caplog) -> None:
    clock = Clock()
    facts = Facts()
    facts.fail = FactsUnavailable("connection refused")
    gate = make_gate(tmp_path, [KR_PLAN], facts, clock=clock)
    with caplog.at_level("WARNING", logger="policy.synapse_module"):
        for _ in range(5):
            await gate.decide(KIM, "call.place")
        clock.now += 11
        await gate.decide(KIM, "call.place")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refusing call.place" in lines[0] and "fail_open: false" in lines[0]
    assert "4 more since the last warning" in lines[1]
