"""The hook surface of purify. Each hook hands the plugin a `register` callable; the plugin calls it
once per thing it provides. Keep this file small: every hook here is a promise to plugin authors."""

import pluggy

hookspec = pluggy.HookspecMarker("purify")
hookimpl = pluggy.HookimplMarker("purify")


@hookspec
def register_defenses(register):
    """Register backdoor defenses: call ``register(Defense(...))`` for each."""


@hookspec
def register_attacks(register):
    """Register attacks (a trigger to stamp, for poisoning and ASR): ``register(Attack(...))``."""


@hookspec
def register_evaluators(register):
    """Register evaluators (model + test data -> metrics): ``register(Evaluator(...))``."""


@hookspec
def register_adapters(register):
    """Register checkpoint formats to detect, load and write back: ``register(Adapter(...))``."""


@hookspec
def register_datasets(register):
    """Register data formats for ``--data``, detected by content: ``register(DataFormat(...))``."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``purify`` command group."""
