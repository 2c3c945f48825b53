"""purify: remove backdoors from trained image classifiers.

This is the face plugins see: the types they register and receive, `hookimpl`, the error users
see, a small set of plugin utilities, and the library calls behind the commands (all documented
in docs/writing-plugins.md). The shipped plugins import from here and from nowhere else in
purify, exactly as a third-party one would::

    from purify_backdoor import Defense, Option, hookimpl

The library calls are loaded on first use (PEP 562), so importing a plugin type does not load
the file pipeline, the zoo, the executors or Ray.
"""

import importlib
from typing import Any

from purify_backdoor.adversarial import pgd_away_from_label
from purify_backdoor.atomic import atomic_write
from purify_backdoor.attack_spec import triggered_test_set
from purify_backdoor.checkpoint_source import CheckpointSource, write_torch_file
from purify_backdoor.data.imageset import ImageSet, Splits
from purify_backdoor.data.loading import decode_images, is_image_file, load_image_folder
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.data.tensors import (
    batch_slices,
    random_crop_flip,
    random_rotate,
    shuffled_batches,
    to_tensor,
)
from purify_backdoor.errors import PurifyError
from purify_backdoor.figures import Figure, channel_scores_figure, plot_figure, png_from_array
from purify_backdoor.hookspecs import hookimpl
from purify_backdoor.input_check import recorded_fraction
from purify_backdoor.models.normalized import InputWrapper, Normalized, cpu_state_dict, unwrap
from purify_backdoor.models.registry import (
    build_model,
    build_with_weights,
    output_classes,
    recognise_architecture,
    weight_mismatches,
)
from purify_backdoor.models.wideresnet import wideresnet_shape
from purify_backdoor.numpy_pickle import names_numpy1, save_with_numpy1_names
from purify_backdoor.options import (
    Bounds,
    Option,
    above,
    at_least,
    between,
    options_from_settings,
    settings_from_options,
)
from purify_backdoor.plugin_types import (
    Adapter,
    Attack,
    AttackSpec,
    DataFormat,
    Defense,
    DefenseJob,
    EvalJob,
    Evaluator,
    InputConvention,
    LoadedModel,
    RunContext,
    TriggeredSet,
)
from purify_backdoor.runtime import run_context
from purify_backdoor.training import (
    EpochCheckpoint,
    TrainSettings,
    accuracy,
    cached,
    check_finite_loss,
    fit,
    frozen,
    predict_logits,
)
from purify_backdoor.untrusted_files import copy_regular_tree, refuse_special, refuse_specials_in

__all__ = [
    # the plugin types and the error: what a plugin registers, receives and raises
    "Adapter",
    "Attack",
    "AttackSpec",
    "CheckpointSource",
    "DataFormat",
    "Defense",
    "DefenseJob",
    "EvalJob",
    "Evaluator",
    "Figure",
    "ImageSet",
    "InputConvention",
    "LoadedModel",
    "Option",
    "PurifyError",
    "RunContext",
    "Splits",
    "TriggeredSet",
    "hookimpl",
    # the plugin utilities, by job; docs/writing-plugins.md lists each one
    # tensors and batching
    "batch_slices",
    "random_crop_flip",
    "random_rotate",
    "shuffled_batches",
    "to_tensor",
    # training, its per-epoch checkpoint and the finite-loss check
    "EpochCheckpoint",
    "TrainSettings",
    "accuracy",
    "cached",
    "check_finite_loss",
    "fit",
    "frozen",
    "predict_logits",
    # networks and their weights
    "InputWrapper",
    "Normalized",
    "build_model",
    "build_with_weights",
    "cpu_state_dict",
    "output_classes",
    "recognise_architecture",
    "unwrap",
    "weight_mismatches",
    "wideresnet_shape",
    # the valid range of a numeric option
    "Bounds",
    "above",
    "at_least",
    "between",
    # options from a settings dataclass
    "options_from_settings",
    "settings_from_options",
    # pictures for the HTML report
    "channel_scores_figure",
    "plot_figure",
    "png_from_array",
    # files, images and triggers
    "atomic_write",
    "copy_regular_tree",
    "decode_images",
    "is_image_file",
    "load_image_folder",
    "pgd_away_from_label",
    "refuse_special",
    "refuse_specials_in",
    "triggered_test_set",
    "write_torch_file",
    "names_numpy1",
    "save_with_numpy1_names",
    "recorded_fraction",
    "synthetic_images",
    # the library: what the commands run, callable from Python
    "Purified",
    "defend",
    "EvalRequest",
    "PurifyRequest",
    "TrainRequest",
    "ZooRequest",
    "evaluate_checkpoint",
    "make_executor",
    "metrics_table",
    "purify_checkpoint",
    "run_context",
    "run_zoo",
    "train_backdoored",
]

# name -> module of the library calls, imported when first asked for
_LIBRARY = {
    "Purified": "purify_backdoor.in_memory",
    "defend": "purify_backdoor.in_memory",
    "EvalRequest": "purify_backdoor.checkpoint_evaluation",
    "evaluate_checkpoint": "purify_backdoor.checkpoint_evaluation",
    "PurifyRequest": "purify_backdoor.purification",
    "purify_checkpoint": "purify_backdoor.purification",
    "TrainRequest": "purify_backdoor.backdoor_training",
    "train_backdoored": "purify_backdoor.backdoor_training",
    "ZooRequest": "purify_backdoor.zoo.jobs",
    "run_zoo": "purify_backdoor.zoo.pipeline",
    "make_executor": "purify_backdoor.executors",
    "metrics_table": "purify_backdoor.evaluation",
}


def __getattr__(name: str) -> Any:
    if name in _LIBRARY:
        value = getattr(importlib.import_module(_LIBRARY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'purify_backdoor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LIBRARY})
