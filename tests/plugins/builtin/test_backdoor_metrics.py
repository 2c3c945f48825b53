import numpy as np
import pytest
import torch
from torch import nn

from purify_backdoor.attack_spec import parse_attack_spec
from purify_backdoor.builtin.backdoor_metrics import evaluate
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.evaluation import defense_effectiveness_rating
from purify_backdoor.plugin_types import EvalJob, RunContext


class CornerDetector(nn.Module):
    """Predicts class 4 when the bottom-right pixel is white, else the true class (stored in the
    red channel of pixel (0, 0)): a perfect backdoored model, for exact metric values."""

    def forward(self, x):
        logits = torch.nn.functional.one_hot((x[:, 0, 0, 0] * 255).round().long(), 10).float()
        triggered = x[:, :, -1, -1].sum(1) == 3
        logits[triggered] = torch.nn.functional.one_hot(torch.tensor(4), 10).float()
        return logits


def test_exact_values_on_a_known_model():
    labels = np.arange(20) % 10
    images = np.zeros((20, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = labels
    test = ImageSet(images, labels, tuple("abcdefghij"))
    spec = parse_attack_spec("badnet:pattern=patch,size=1,target=4")
    job = EvalJob(CornerDetector(), test, spec, RunContext(torch.device("cpu"), 0))
    metrics = evaluate(job)
    assert metrics["clean_acc"] == 1.0 and metrics["asr"] == 1.0 and metrics["robust_acc"] == 0.0
    job.reference = CornerDetector()
    job.attack = None
    metrics = evaluate(job)
    assert metrics["agreement"] == 1.0 and metrics["functionality_l2"] == 0.0
    assert "asr" not in metrics


@pytest.mark.parametrize(
    ("before", "after", "der"),
    [
        ((0.9, 1.0), (0.9, 0.0), 1.0),
        ((0.9, 1.0), (0.8, 0.0), 0.95),
        ((0.9, 0.5), (0.95, 0.9), 0.5),
    ],
)
def test_der(before, after, der):
    metrics = [{"clean_acc": acc, "asr": asr} for acc, asr in (before, after)]
    assert defense_effectiveness_rating(*metrics) == pytest.approx(der)
