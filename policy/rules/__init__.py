"""Rule types: the :class:`Rule` base, the registry, and the built-in types.

=========================  ==========  ==================================================
type                       family      what it does
=========================  ==========  ==================================================
``no_blocking``            carrier     allow calls (the default carrier policy)
``plan_threshold``         carrier     deny mVoIP on plans under a price per network
``mvoip_quota``            carrier     monthly MB cap for calls over mobile data
``wifi_only``              carrier     calls only over Wi-Fi
``fcc_2010_no_blocking``   regulation  veto carrier blocks for US carriers (calls)
``nl_7_4a``                regulation  veto carrier blocks for Dutch carriers (any action)
``none``                   identity    no verification required
``require_verified``       identity    verification required for chosen actions
``threshold``              identity    same, while daily active users ≥ N
``copyright_media``        content     no sharing of music and video out of the drive
=========================  ==========  ==================================================
"""

from .base import DRY_RUN, ENFORCE, EVERYTHING, Rule, Scope
from .carrier import MvoipQuota, NoBlocking, PlanThreshold, WifiOnly
from .content import CopyrightMedia
from .identity import DailyUsersThreshold, NoVerification, RequireVerified
from .params import REQUIRED, Invalid, Param
from .registry import register_rule_type, rule_type, rule_types, unregister_rule_type
from .regulation import Fcc2010NoBlocking, Nl74a

BUILTIN_TYPES: tuple[type[Rule], ...] = (
    NoBlocking,
    PlanThreshold,
    MvoipQuota,
    WifiOnly,
    Fcc2010NoBlocking,
    Nl74a,
    NoVerification,
    RequireVerified,
    DailyUsersThreshold,
    CopyrightMedia,
)

for _cls in BUILTIN_TYPES:
    register_rule_type(_cls.type_name, _cls)

__all__ = [
    "BUILTIN_TYPES",
    "DRY_RUN",
    "ENFORCE",
    "EVERYTHING",
    "REQUIRED",
    "CopyrightMedia",
    "DailyUsersThreshold",
    "Fcc2010NoBlocking",
    "Invalid",
    "MvoipQuota",
    "Nl74a",
    "NoBlocking",
    "NoVerification",
    "Param",
    "PlanThreshold",
    "RequireVerified",
    "Rule",
    "Scope",
    "WifiOnly",
    "register_rule_type",
    "rule_type",
    "rule_types",
    "unregister_rule_type",
]
