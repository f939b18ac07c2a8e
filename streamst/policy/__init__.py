"""Simultaneous read/write policies, free of model code (see docs/policy.md).

``make_policy(PolicyConfig.for_pair("zh", "en"))`` gives the default reorder-aware
policy; the pipeline keeps one :class:`PolicyState` per stream and calls :func:`step`.
"""

from streamst.policy.base import (
    Action,
    Policy,
    PolicyState,
    Read,
    Write,
    apply,
    common_prefix_length,
    force_prefix,
)
from streamst.policy.config import POLICY_NAMES, PolicyConfig, PolicyName, default_ratio, make_policy
from streamst.policy.driver import ContinueSource, StepTrace, Translate, TranslateMany, run_policy, step
from streamst.policy.local_agreement import LocalAgreement
from streamst.policy.reorder import ReorderAware, supported_length
from streamst.policy.waitk import WaitK, waitk_allowed

__all__ = [
    "Action",
    "ContinueSource",
    "LocalAgreement",
    "POLICY_NAMES",
    "Policy",
    "PolicyConfig",
    "PolicyName",
    "PolicyState",
    "Read",
    "ReorderAware",
    "StepTrace",
    "Translate",
    "TranslateMany",
    "WaitK",
    "Write",
    "apply",
    "common_prefix_length",
    "default_ratio",
    "force_prefix",
    "make_policy",
    "run_policy",
    "step",
    "supported_length",
    "waitk_allowed",
]
