"""Anywhere's policy engine: ordered, pure rules that decide whether a person may act.

The engine has no I/O and does not import the bridge, so the same rules run inside the
bridge and inside Synapse as a module. What callers use::

    from anywhere.policy import Engine, Request

    engine = Engine.from_config(config["policy.rules"], extra_types=plugin_rule_types)
    decision = engine.evaluate(Request(actor, "call.place", facts=facts))
    if not decision.allowed:
        tell(person, decision.reason)

See ``docs/policy.md`` for operators and plugin authors.
"""

from .engine import Engine
from .errors import PolicyConfigError, Problem
from .model import ALLOW, DENY, REQUIRE_VERIFICATION, Decision, Outcome, Request, Verdict
from .rules import Param, Rule, Scope, register_rule_type, rule_type, rule_types
from .ruleset import RuleSet, load_ruleset

__all__ = [
    "ALLOW",
    "DENY",
    "REQUIRE_VERIFICATION",
    "Decision",
    "Engine",
    "Outcome",
    "Param",
    "PolicyConfigError",
    "Problem",
    "Request",
    "Rule",
    "RuleSet",
    "Scope",
    "Verdict",
    "load_ruleset",
    "register_rule_type",
    "rule_type",
    "rule_types",
]
