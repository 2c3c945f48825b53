"""Each stage of a defense run, alone: the input check, the baseline, the defense (seeded afresh),
the verdict, the after-metrics, and the file layer's output plan and defender data."""

from __future__ import annotations

import pytest
import torch

from purify_backdoor import Defense, PurifyError, RunContext
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.manager import Registered
from purify_backdoor.purification import PurifyRequest, defender_data, plan_outputs
from purify_backdoor.stages import (
    BROKEN,
    PURIFIED,
    UNCHANGED,
    DefenderData,
    check_input,
    judge,
    measure_after,
    measure_before,
    run_defense,
)
from tests.conftest import tiny_wideresnet

CPU = torch.device("cpu")


def entry(run, name: str = "probe") -> Registered:
    return Registered("defense", Defense(name, "test defense", run), "tests", "0")


@pytest.fixture
def loaded(nad_checkpoint):
    return open_checkpoint(nad_checkpoint, "auto", False, None)


@pytest.fixture(scope="module")
def data():
    return DefenderData(synthetic_images(40, 16, seed=0), synthetic_images(30, 16, seed=1))


def noisy(job):
    """A defense that draws from the global random state, as network initialisers do."""
    with torch.no_grad():
        for parameter in job.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return job.model


def test_the_input_check_uses_test_images_first_and_none_without_data(data):
    model = tiny_wideresnet()
    record = check_input(model, data, RunContext(CPU, 0), accept_low=True)
    assert record["images"] == len(data.test)
    assert check_input(model, DefenderData(None, None), RunContext(CPU, 0), True) is None


def test_the_baseline_is_a_frozen_copy_measured_afresh_without_identity(loaded, data):
    _, model = loaded
    baseline = measure_before(model, data, None, RunContext(CPU, 0))
    assert baseline.original is not model.model
    assert not any(p.requires_grad for p in baseline.original.parameters())
    assert 0 <= baseline.metrics["clean_acc"] <= 1
    assert baseline.reference_logits.shape == (len(data.test), 10)


def test_the_defense_draws_the_same_whatever_loading_drew_before(nad_checkpoint, data):
    results = []
    for draws in (0, 5):
        _, model = open_checkpoint(nad_checkpoint, "auto", False, None)
        torch.rand(draws)  # loading another format, or another network, draws differently
        outcome = run_defense(entry(noisy), {}, model, data, RunContext(CPU, 3))
        results.append(outcome.model.state_dict())
        assert len(outcome.times) == 1 and outcome.job.clean is data.clean
    assert all(torch.equal(results[0][key], results[1][key]) for key in results[0])


def test_the_verdict(loaded, data):
    _, model = loaded
    context = RunContext(CPU, 0)
    baseline = measure_before(model, data, None, context)

    def unchanged(job):
        job.leave_unchanged("nothing found", "no trigger")
        return job.model

    outcome = run_defense(entry(unchanged), {}, model, data, context)
    verdict = judge(outcome, baseline, data, context, True, "probe")
    assert (verdict.outcome, verdict.status, verdict.reason) == (
        UNCHANGED,
        "nothing found",
        "no trigger",
    )
    after = measure_after(outcome, verdict, baseline, model, data, None, context)
    assert after["after"] == after["before"] == baseline.metrics

    outcome = run_defense(entry(noisy), {}, model, data, context)
    assert judge(outcome, baseline, data, context, True, "probe").outcome == PURIFIED
    # an untrained model is near chance on clean images: broken unless accepted
    assert judge(outcome, baseline, data, context, False, "probe").outcome == BROKEN

    def lying(job):
        job.leave_unchanged("nothing found", "no trigger")
        return noisy(job)

    outcome = run_defense(entry(lying), {}, model, data, context)
    with pytest.raises(PurifyError, match="said it left the model unchanged but changed"):
        judge(outcome, baseline, data, context, True, "probe")


def test_the_output_plan_is_checked_before_any_work(nad_checkpoint):
    adapter, _ = open_checkpoint(nad_checkpoint, "auto", False, None)
    defense = Defense("probe", "d", noisy, extra_outputs=(".extra",))
    plan = plan_outputs(PurifyRequest(nad_checkpoint, "probe", {}), adapter, defense)
    assert plan.out.name == "model.purified.pth.tar" and plan.native
    assert plan.report.name == "model.purified.pth.tar.report.json"
    assert plan.extras == {".extra": nad_checkpoint.with_name("model.purified.extra")}
    with pytest.raises(PurifyError, match="input"):
        plan_outputs(
            PurifyRequest(nad_checkpoint, "probe", {}, out=nad_checkpoint), adapter, defense
        )


def test_the_defender_data_is_a_seeded_stratified_subset(tiny_data):
    request = PurifyRequest(tiny_data, "probe", {}, data=tiny_data, ratio=0.1)
    defense = Defense("probe", "d", noisy)
    first = defender_data(request, defense, 10, RunContext(CPU, 0, quiet=True))
    again = defender_data(request, defense, 10, RunContext(CPU, 0, quiet=True))
    assert len(first.clean) == 20 and len(first.test) == 100
    assert (first.clean_indices == again.clean_indices).all()
    with pytest.raises(PurifyError, match="needs clean data; pass --data"):
        defender_data(PurifyRequest(tiny_data, "probe", {}), defense, 10, RunContext(CPU, 0))
