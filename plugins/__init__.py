"""purify: remove backdoors from trained image classifiers.

This package is the plugin host. Plugins import what they need from here::

    from plugins import Defense, Option, hookimpl
"""

from plugins.hookspecs import hookimpl
from plugins.options import Option
from plugins.plugin_types import (
    Adapter,
    Attack,
    AttackSpec,
    CheckpointSource,
    Defense,
    DefenseJob,
    EvalJob,
    Evaluator,
    InputConvention,
    LoadedModel,
    RunContext,
)

__all__ = [
    "Adapter",
    "Attack",
    "AttackSpec",
    "CheckpointSource",
    "Defense",
    "DefenseJob",
    "EvalJob",
    "Evaluator",
    "InputConvention",
    "LoadedModel",
    "Option",
    "RunContext",
    "hookimpl",
]
