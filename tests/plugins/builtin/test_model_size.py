import torch

from purify_backdoor.builtin.model_size import evaluate
from purify_backdoor.models.normalized import Normalized
from purify_backdoor.plugin_types import EvalJob, RunContext
from tests.conftest import tiny_wideresnet


def test_counts_parameters_and_saved_bytes_of_the_stored_network():
    model = tiny_wideresnet()
    context = RunContext(torch.device("cpu"), 0)
    plain = evaluate(EvalJob(model, None, None, context))
    assert plain["parameters"] == sum(p.numel() for p in model.parameters())
    assert plain["weight_bytes"] > 4 * plain["parameters"]
    wrapped = evaluate(EvalJob(Normalized(model, (0.5,) * 3, (0.2,) * 3), None, None, context))
    assert wrapped == plain  # the normalization wrapper is not part of what is stored
