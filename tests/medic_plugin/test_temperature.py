"""tau auto: the bisection over 5, 10, 20 against a held-out accuracy budget, two trainings, the
chosen run's report, and the option's parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.errors import PurifyError
from purify_backdoor.medic import parse_tau, run
from purify_backdoor.medic import temperature as rule
from purify_backdoor.medic.cloning import MedicSettings
from purify_backdoor.plugin_types import DefenseJob, RunContext
from tests.conftest import tiny_wideresnet

CLEAN = synthetic_images(64, 16, seed=0)


class Scored(nn.Identity):
    """A stand-in model whose held-out accuracy is set by hand."""

    def __init__(self, acc: float) -> None:
        super().__init__()
        self.acc = acc


@pytest.mark.parametrize(
    ("accuracies", "chosen", "tried"),
    [
        ({10.0: 0.79, 20.0: 0.78}, 20.0, ["10", "20"]),  # both within 2.5 points of 0.80
        ({10.0: 0.79, 20.0: 0.70}, 10.0, ["10", "20"]),
        ({10.0: 0.70, 5.0: 0.60}, 5.0, ["10", "5"]),  # 5 is the fallback, whatever it costs
    ],
)
def test_the_largest_tau_within_budget_is_chosen_in_two_trainings(
    monkeypatch, tmp_path, accuracies, chosen, tried
):
    monkeypatch.setattr(rule, "accuracy", lambda model, data, device: model.acc)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True, workdir=tmp_path)
    job = DefenseJob(Scored(0.80), CLEAN, 10, {}, context)
    trained = []

    def train_at(trial: DefenseJob, tau: float) -> nn.Module:
        assert len(trial.clean) == len(CLEAN) - 6  # the held-out tenth is not trained on
        assert trial.context.workdir == tmp_path / f"tau{tau:g}"  # resumable per tau
        trained.append(tau)
        trial.details["medic"] = {"history": [tau]}
        return Scored(accuracies[tau])

    clone, record = rule.choose_temperature(job, 0.025, 0.1, train_at)
    assert record["chosen"] == chosen and clone.acc == accuracies[chosen]
    assert list(record["tried"]) == tried and len(trained) == 2
    assert record["teacher_held_out_acc"] == 0.80 and record["held_out_images"] == 6
    assert job.details["medic"]["history"] == [chosen]  # the chosen run's report
    assert record["within_budget"] == (0.80 - accuracies[chosen] <= 0.025)


def test_tau_auto_runs_end_to_end_and_reports_its_choice():
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    options = vars(MedicSettings(epochs=1, batch_size=32)) | {"tau": "auto", "auto_budget": 2.5}
    job = DefenseJob(tiny_wideresnet(), CLEAN, 10, options, context)
    clone = run(job)
    record = job.details["medic"]["tau_auto"]
    assert record["chosen"] in (5.0, 10.0, 20.0) and len(record["tried"]) == 2
    assert len(job.details["medic"]["history"]) == 1
    assert isinstance(clone, nn.Module) and clone is not job.model


@pytest.mark.parametrize("text", ["hot", "-1", ""])
def test_a_bad_tau_is_a_one_line_error(text):
    with pytest.raises(PurifyError, match="tau must be 'auto' or a number"):
        parse_tau(text)
    assert parse_tau("auto") is None and parse_tau("10") == 10.0
