"""The Synapse module's logic without Synapse: config, decisions with the facts it keeps,
the last good rules, the background exchange with the bridge (breaker, staleness) and
what goes to the audit. Time is an injectable clock; exchanges are counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from anywhere.policy.fact_sync import MAX_OUTBOX, SyncFailed
from anywhere.policy.synapse_module import (
    FIELD_PREFIX,
    ModuleConfig,
    ModuleConfigError,
    PolicyGate,
    parse_sync_answer,
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
THRESHOLD = {"type": "threshold", "id": "kr-2007", "methods": ["code"]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def write_rules(path: Path, rules: list[dict]) -> None:
    path.write_text(yaml.safe_dump(rules), "utf-8")
    # A later write in the same second must still be seen as a change.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (_bump())))


_counter = [0]


def _bump() -> int:
    _counter[0] += 1
    return _counter[0]


def make_gate(
    tmp_path: Path, rules: list[dict] | None, facts: dict | None = None, **options
) -> PolicyGate:
    """A gate over ``rules`` (None: the rules file as it is) whose store holds ``facts``
    for KIM, just received from the bridge."""
    clock = options.pop("clock", None) or Clock()
    path = tmp_path / "rules.yaml"
    if rules is not None:
        write_rules(path, rules)
    config = ModuleConfig.from_dict(
        {
            "rules_file": str(path),
            "bridge_url": "http://127.0.0.1:1/",
            "bridge_token": "secret",
            **options,
        }
    )
    gate = PolicyGate(config, clock=clock)
    if facts is not None:
        receive(gate, {KIM: facts})
    return gate


def receive(gate: PolicyGate, users: dict, *, full: bool = True, **extra) -> None:
    """What a successful exchange with the bridge puts in the store."""
    gate.store.apply({"cursor": "run:1", "full": full, "users": users, **extra})


# ----------------------------------------------------------------- config


def test_config_defaults_and_normalisation() -> None:
    config = ModuleConfig.from_dict(
        {"rules_file": "/r.yaml", "bridge_url": "http://h:1/", "bridge_token": "t"}
    )
    assert config.bridge_url == "http://h:1"
    assert config.facts_refresh_seconds == 2.0 and config.facts_max_age_seconds == 60.0
    assert config.breaker_seconds == 30.0 and config.timeout_seconds == 2.0
    assert str(config.last_good_path) == "/r.yaml.last-good"
    assert config.fail_open is False
    assert config.ignore_users == ()


def test_config_reports_every_problem() -> None:
    with pytest.raises(ModuleConfigError) as info:
        ModuleConfig.from_dict(
            {
                "bridge_url": "127.0.0.1:29340",
                "bridge_token": "",
                "fail_open": "no",
                "facts_refresh_seconds": -1,
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
        "facts_refresh_seconds: expected a number",
        "ignore_users[0]: invalid regex",
        "typo: unknown option",
    ):
        assert part in message


def test_parse_config_stops_synapse_for_its_own_mistakes_never_for_the_rules(
    tmp_path: Path,
) -> None:
    pytest.importorskip("synapse")
    from synapse.config import ConfigError

    from anywhere.policy.synapse_module import AnywherePolicyModule

    bad = tmp_path / "rules.yaml"
    bad.write_text("- type: plan_treshold\n", "utf-8")
    with pytest.raises(ConfigError, match="bridge_token: required"):
        AnywherePolicyModule.parse_config({"rules_file": str(bad), "bridge_url": "http://h"})
    parsed = AnywherePolicyModule.parse_config(
        {"rules_file": str(bad), "bridge_url": "http://h:1", "bridge_token": "t"}
    )
    assert parsed.rules_file == str(bad)


def test_the_obsolete_cache_option_is_accepted_and_warned_about(tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING", logger="anywhere.policy.synapse_module"):
        make_gate(tmp_path, [KR_PLAN], facts_cache_seconds=2)
    assert "facts_cache_seconds is obsolete" in caplog.text


def test_an_empty_rules_file_is_said_loudly(tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING", logger="anywhere.policy.synapse_module"):
        gate = make_gate(tmp_path, [])
    assert gate.has_rules and "holds no rules: the module restricts nothing" in caplog.text


def test_sync_answer_parsing() -> None:
    assert parse_sync_answer(200, b'{"cursor": "a:1", "users": {}}') == {
        "cursor": "a:1",
        "users": {},
    }
    for status, body in ((401, b'{"error": "no"}'), (200, b"nope")):
        with pytest.raises(SyncFailed):
            parse_sync_answer(status, body)


# -------------------------------------------------------------- decisions


def test_carrier_rule_denies_with_reason_fields_and_decision_id(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, [KR_PLAN], {**SKT_45000, "network": "3g"})
    answer = gate.decide(KIM, "call.place", room_id="!room:example.kr")
    assert not answer.allowed
    assert answer.rule_id == "kr-plan" and answer.code == "plan_below_mvoip_threshold"
    fields = answer.error_fields()
    assert fields[FIELD_PREFIX + "rule"] == "kr-plan"
    assert fields[FIELD_PREFIX + "code"] == "plan_below_mvoip_threshold"
    assert fields[FIELD_PREFIX + "outcome"] == "deny"
    assert "54,000 KRW" in fields[FIELD_PREFIX + "reason"]
    assert fields["error"].startswith(fields[FIELD_PREFIX + "reason"])
    assert "kr-plan" in fields["error"]
    assert f"decision {answer.decision_id}" in fields["error"]

    receive(gate, {KIM: {"network": "wifi"}}, full=False)
    assert gate.decide(KIM, "call.place").allowed


def test_regulation_vetoes_the_block(tmp_path: Path) -> None:
    facts = {"carrier": "AT&T", "carrier_country": "US", "network": "3g"}
    wifi_only = {"type": "wifi_only", "id": "att-facetime", "carriers": ["AT&T"]}
    gate = make_gate(tmp_path, [wifi_only], facts)
    assert gate.decide(KIM, "call.place").code == "wifi_only"
    gate = make_gate(tmp_path, [wifi_only, {"type": "fcc_2010_no_blocking", "id": "us-fcc"}], facts)
    answer = gate.decide(KIM, "call.place")
    assert answer.allowed and answer.code == "carrier_block_vetoed" and answer.rule_id == "us-fcc"


def test_identity_rule_requires_verification(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, [REAL_NAME], {"verified_methods": []})
    answer = gate.decide(KIM, "group.create")
    assert answer.outcome == "require_verification" and not answer.allowed
    assert "!verify" in answer.reason
    receive(gate, {KIM: {"verified_methods": ["code"]}})
    assert gate.decide(KIM, "group.create").allowed


def test_uncovered_actions_and_event_types_are_skipped(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, [KR_PLAN], SKT_45000)
    assert gate.action_for_event("m.call.invite") == "call.place"
    assert gate.action_for_event("m.call.answer") == "call.answer"
    assert gate.action_for_event("m.room.message") is None  # no rule covers room.post
    assert gate.action_for_event("m.reaction") is None
    assert gate.decide(KIM, "group.create") is None
    assert gate.decide(KIM, "room.invite") is None


def test_ignored_users_are_not_checked(tmp_path: Path) -> None:
    gate = make_gate(
        tmp_path,
        [KR_PLAN],
        {**SKT_45000, "network": "3g"},
        ignore_users=["@anywhere:example\\.kr", "@anywhere_.*"],
    )
    assert gate.ignored("@anywhere:example.kr")
    assert gate.ignored("@anywhere_kakao_123:example.kr")
    assert not gate.ignored(KIM)
    assert gate.decide("@anywhere_kakao_123:example.kr", "call.place") is None


def test_people_no_rule_can_apply_to_are_not_checked(tmp_path: Path) -> None:
    scoped = {**REAL_NAME, "scope": {"users": ["@*:ministry.example"]}}
    rooms = {**REAL_NAME, "id": "rooms", "scope": {"rooms": ["!gov*"]}}
    public = {**REAL_NAME, "id": "public", "scope": {"public_institution": True}}
    gate = make_gate(tmp_path, [scoped, rooms], {"verified_methods": []})
    assert gate.decide(KIM, "group.create") is None
    assert gate.decide(KIM, "room.post", room_id="!other:x") is None
    receive(gate, {"@lee:ministry.example": {"verified_methods": []}})
    assert not gate.decide("@lee:ministry.example", "group.create").allowed
    assert not gate.decide(KIM, "room.post", room_id="!gov1:x").allowed
    # public_institution is known from the patterns the bridge sends.
    gate = make_gate(tmp_path, [public], {"verified_methods": []})
    assert gate.decide(KIM, "room.post", room_id="!other:x") is None
    receive(gate, {KIM: {}}, public_institutions=["!other:x"])
    assert not gate.decide(KIM, "room.post", room_id="!other:x").allowed


# -------------------------------------------- staleness, unavailable facts


def test_facts_are_used_until_they_are_too_old_then_fail_open_decides(tmp_path: Path) -> None:
    clock = Clock()
    gate = make_gate(
        tmp_path, [KR_PLAN], {**SKT_45000, "network": "wifi"}, clock=clock, facts_max_age_seconds=60
    )
    clock.now += 59.9
    assert gate.decide(KIM, "call.place").allowed  # within the bound: the facts hold
    clock.now += 0.2
    answer = gate.decide(KIM, "call.place")
    assert not answer.allowed and answer.code == "policy_facts_unavailable"
    assert answer.decision_id  # audited and shown like any decision
    assert "unreachable" in answer.error_fields()["error"]

    open_gate = make_gate(tmp_path, [KR_PLAN], clock=clock, fail_open=True)
    answer = open_gate.decide(KIM, "call.place")  # never received any facts
    assert answer.allowed and answer.code == "fail_open"


def test_without_facts_ordinary_posts_pass_while_the_threshold_is_not_reached(
    tmp_path: Path,
) -> None:
    """The identity threshold rule cannot refuse below its threshold: no facts needed,
    so the bridge being down refuses nothing."""
    clock = Clock()
    gate = make_gate(tmp_path, [KR_PLAN, THRESHOLD], clock=clock)  # facts never received
    answer = gate.decide(KIM, "room.post", room_id="!r:x")
    assert answer.allowed and answer.code == "no_rule"  # DAU unknown: no opinion
    assert not gate.decide(KIM, "call.place").allowed  # carrier rules need the facts

    for n in range(3):
        gate.store.saw_active(f"@p{n}:example.kr")
    assert gate.decide(KIM, "room.post").allowed  # 3 of 100,000

    receive(gate, {}, daily_active_users=100_000)
    clock.now += 3600  # the facts are stale now, the count is still the last known
    answer = gate.decide(KIM, "room.post")
    assert not answer.allowed and answer.code == "policy_facts_unavailable"


def test_daily_active_users_are_counted_by_the_module_per_utc_day(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = 1_764_633_599.0  # 2025-12-01 23:59:59 UTC
    gate = make_gate(tmp_path, [THRESHOLD], clock=clock)
    store = gate.store
    store.saw_active("@a:x")
    store.saw_active("@b:x")
    store.saw_active("@a:x")
    assert store.daily_active_users() == 2
    receive(gate, {}, daily_active_users=1)
    assert store.daily_active_users() == 2  # the module saw more than the bridge knows
    clock.now += 1  # a new UTC day
    store.saw_active("@a:x")
    assert store.daily_active_users() == 1
    outbox = store.take_outbox()
    assert outbox.payload()["active"] == {"2025-12-01": ["@a:x", "@b:x"], "2025-12-02": ["@a:x"]}


# ------------------------------------------------- the exchange, the breaker


def test_a_failing_bridge_costs_one_exchange_per_breaker_period(tmp_path: Path, caplog) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, [KR_PLAN], clock=clock, facts_refresh_seconds=2, breaker_seconds=30)
    sync = gate.sync
    _, outbox = sync.begin(gate.version)
    sync.succeeded({"cursor": "run:1", "full": True, "users": {}}, outbox)
    clock.now += 2
    attempts = 0
    with caplog.at_level("WARNING", logger="anywhere.policy.synapse_module"):
        for _tick in range(1200):  # two minutes in ticks of 0.1 s, events in between
            if sync.due():
                attempts += 1
                _, outbox = sync.begin(gate.version)
                sync.failed(SyncFailed("timed out"), outbox)
            gate.decide(KIM, "call.place")
            clock.now += 0.1
    assert attempts == 4  # at 0, 30, 60 and 90 s
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "next try in 30s" in warnings[0]  # one per minute

    body, outbox = sync.begin(gate.version)
    sync.succeeded({"cursor": "run:5", "full": True, "users": {KIM: {"network": "wifi"}}}, outbox)
    assert body["cursor"] == "run:1" and gate.store.fresh()
    assert not sync.due()
    clock.now += 2
    assert sync.due()  # every facts_refresh_seconds while the bridge answers
    body, _ = sync.begin(gate.version)
    assert body["cursor"] == "run:5"


def test_before_any_facts_a_refused_exchange_is_retried_soon_a_hung_one_opens_the_breaker(
    tmp_path: Path,
) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, [KR_PLAN], clock=clock, facts_refresh_seconds=2)
    _, outbox = gate.sync.begin(gate.version)
    # The bridge is not up yet: refused at once, tried again soon.
    gate.sync.failed(ConnectionRefusedError("refused"), outbox, hung=False)
    clock.now += 1.9
    assert not gate.sync.due()
    clock.now += 0.1
    assert gate.sync.due()
    # Hung before any facts came: that cost a timeout, the breaker opens.
    _, outbox = gate.sync.begin(gate.version)
    gate.sync.failed(TimeoutError("timed out"), outbox, hung=True)
    clock.now += 29.9
    assert not gate.sync.due()
    clock.now += 0.1
    assert gate.sync.due()


def test_a_malformed_answer_counts_as_a_failure_and_keeps_what_was_to_be_sent(
    tmp_path: Path,
) -> None:
    gate = make_gate(tmp_path, [KR_PLAN], {**SKT_45000, "network": "3g"})
    gate.conclude(gate.decide(KIM, "call.place"))
    gate.store.saw_active(KIM)
    body, outbox = gate.sync.begin(gate.version)
    assert len(body["decisions"]) == 1 and body["active"]
    gate.sync.succeeded({"users": "nope"}, outbox)
    assert gate.sync.failures == 1
    body, _ = gate.sync.begin(gate.version)
    assert len(body["decisions"]) == 1 and list(body["active"].values()) == [[KIM]]


def test_the_outbox_is_bounded(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, [KR_PLAN])
    for n in range(MAX_OUTBOX + 5):
        gate.store.queue_decision({"decision_id": str(n)})
    body, _ = gate.sync.begin(gate.version)
    assert len(body["decisions"]) == MAX_OUTBOX and body["dropped_decisions"] == 5
    assert body["decisions"][0]["decision_id"] == "5"


def test_refusals_and_dry_run_results_are_queued_for_the_audit_and_allowed_ones_not(
    tmp_path: Path, caplog
) -> None:
    dry = {**REAL_NAME, "id": "trial", "mode": "dry-run", "actions": ["call.place"]}
    gate = make_gate(tmp_path, [KR_PLAN, dry], {**SKT_45000, "network": "3g"})
    with caplog.at_level("INFO", logger="anywhere.policy.synapse_module"):
        refused = gate.decide(KIM, "call.place", room_id="!r:x")
        gate.conclude(refused)
        receive(gate, {KIM: {**SKT_45000, "network": "wifi", "verified_methods": ["code"]}})
        gate.conclude(gate.decide(KIM, "call.place"))  # allowed, with a dry-run verdict
    body, _ = gate.sync.begin(gate.version)
    entry, allowed = body["decisions"]
    assert entry["decision_id"] == refused.decision_id and entry["outcome"] == "deny"
    assert entry["request"]["context"] == {"source": "synapse"}
    assert entry["dry_run_verdicts"][0]["rule_id"] == "trial"
    assert allowed["outcome"] == "allow"
    assert allowed["dry_run_verdicts"][0]["outcome"] == "allow"
    assert [r.name for r in caplog.records] == ["anywhere.policy.synapse_module"]
    assert "DENY call.place by @kim:example.kr" in caplog.records[0].getMessage()


def test_an_allowed_action_is_not_logged_as_a_refusal(tmp_path: Path, caplog) -> None:
    gate = make_gate(tmp_path, [KR_PLAN], {**SKT_45000, "network": "wifi"})
    with caplog.at_level("INFO", logger="anywhere.policy.synapse_module"):
        gate.conclude(gate.decide(KIM, "call.place"))
        gate.conclude(None)
    assert caplog.records == []
    assert gate.sync.begin(gate.version)[0]["decisions"] == []  # nothing to audit


# ------------------------------------------------------------------ rules


def test_rules_file_is_reloaded_at_most_once_a_second(tmp_path: Path) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, [KR_PLAN], clock=clock)
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


def test_invalid_new_rules_keep_the_old_set(tmp_path: Path, caplog) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, [KR_PLAN], {**SKT_45000, "network": "3g"}, clock=clock)
    old = gate.version
    path = Path(gate.config.rules_file)

    path.write_text("- type: plan_treshold\n", "utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 5_000_000_000))
    clock.now += 5
    with caplog.at_level("ERROR", logger="anywhere.policy.synapse_module"):
        gate.maybe_reload()
    assert gate.version == old
    assert "plan_threshold" in gate.reload_error
    assert "stays in force" in caplog.text
    assert gate.decide(KIM, "call.place").code == "plan_below_mvoip_threshold"

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
    assert gate.decide(KIM, "call.place").allowed


def test_an_invalid_rules_file_at_start_falls_back_to_the_last_good_rules(
    tmp_path: Path, caplog
) -> None:
    first = make_gate(tmp_path, [KR_PLAN])
    good = first.version
    last_good = Path(f"{first.config.rules_file}.last-good")
    assert last_good.exists()
    Path(first.config.rules_file).write_text("- type: plan_treshold\n", "utf-8")
    with caplog.at_level("ERROR", logger="anywhere.policy.synapse_module"):
        gate = make_gate(tmp_path, None, {**SKT_45000, "network": "3g"})
    assert gate.has_rules and gate.version == good
    assert gate.decide(KIM, "call.place").code == "plan_below_mvoip_threshold"
    text = caplog.text
    assert str(first.config.rules_file) in text and "did you mean 'plan_threshold'" in text
    assert "starting with the last rules validated" in text and str(last_good) in text
    # The invalid file did not replace the last good copy.
    assert "plan_threshold" in last_good.read_text("utf-8")


@pytest.mark.parametrize("fail_open", [False, True])
def test_with_no_valid_rules_ever_governed_actions_follow_fail_open_and_posts_pass(
    tmp_path: Path, caplog, fail_open: bool
) -> None:
    (tmp_path / "rules.yaml").write_text("- type: plan_treshold\n", "utf-8")
    with caplog.at_level("ERROR", logger="anywhere.policy.synapse_module"):
        gate = make_gate(tmp_path, None, fail_open=fail_open)
    assert not gate.has_rules
    assert "no valid rules were ever loaded" in caplog.text
    assert "call.answer, call.place, group.create are " in caplog.text
    for action in ("call.place", "call.answer", "group.create"):
        answer = gate.decide(KIM, action)
        assert answer.allowed is fail_open and answer.code == "policy_rules_invalid"
    assert gate.action_for_event("m.room.message") is None
    assert gate.decide(KIM, "room.post") is None and gate.decide(KIM, "room.invite") is None

    write_rules(tmp_path / "rules.yaml", [KR_PLAN])  # fixed: in force at the next check
    gate.reload()
    assert gate.has_rules and gate.decide(KIM, "group.create") is None
