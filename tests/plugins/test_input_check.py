"""A model fed the wrong input convention is stopped before any defense runs, with the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from purify_backdoor.cli import cli
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_check import accuracy_floor, check_clean_accuracy

pytestmark = pytest.mark.usefixtures("low_accuracy_check_on")


class ReadsBlue(nn.Module):
    """Classifies by its first input channel, which it was trained to receive as blue (BGR)."""

    def forward(self, x):
        level = x[:, 0].mean(dim=(1, 2))  # blue = 1 - 0.1 * class
        centres = 1 - 0.1 * torch.arange(10, dtype=x.dtype)
        return -(level[:, None] - centres[None]).abs()


def coloured_images(count=200) -> ImageSet:
    """Class k: red 0.1 k, blue 1 - 0.1 k."""
    labels = np.arange(count) % 10
    images = np.zeros((count, 8, 8, 3), dtype=np.uint8)
    images[..., 0] = (25.5 * labels)[:, None, None].round()
    images[..., 2] = (255 - 25.5 * labels)[:, None, None].round()
    return ImageSet(images, labels.astype(np.int64), tuple(str(k) for k in range(10)))


def test_the_floor_is_a_tenth_of_the_way_from_chance():
    assert accuracy_floor(10) == pytest.approx(0.19)
    assert accuracy_floor(1000) == pytest.approx(0.1009)


def test_wrong_channel_order_is_an_error_naming_the_flags_and_the_right_one_passes():
    from purify_backdoor.models.normalized import Normalized

    images, cpu = coloured_images(), torch.device("cpu")
    with pytest.raises(PurifyError, match=r"near chance.*--bgr.*--accept-low-accuracy"):
        check_clean_accuracy(ReadsBlue(), images, cpu, seed=0)
    record = check_clean_accuracy(ReadsBlue(), images, cpu, seed=0, accept_low=True)
    assert record["low"] and record["accepted_low"] and record["images"] == 200
    fixed = Normalized(ReadsBlue(), (0, 0, 0), (1, 1, 1), bgr=True)
    record = check_clean_accuracy(fixed, images, cpu, seed=0)
    assert record["clean_acc"] == 1.0 and not record["low"]


def test_too_few_images_are_measured_not_judged():
    record = check_clean_accuracy(ReadsBlue(), coloured_images(12), torch.device("cpu"), seed=0)
    assert record["images"] == 12 and not record["low"]


def test_run_stops_before_the_defense_and_the_report_keeps_the_measure(nad_checkpoint, tiny_data):
    args = ["--plugin", "finetune", str(nad_checkpoint), "--data", str(tiny_data),
            "-o", "epochs=1", "--ratio", "0.5", "-q", "--no-html"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "near chance" in result.stderr
    assert not list(nad_checkpoint.parent.glob("*.purified*"))
    assert CliRunner().invoke(cli, [*args, "--accept-low-accuracy"]).exit_code == 0
    report_path = nad_checkpoint.with_name("model.purified.pth.tar.report.json")
    check = json.loads(report_path.read_text())["input"]["check"]
    assert check["images"] == 100 and check["low"] and check["accepted_low"]


# A model read with the wrong input convention that still scores above the floor (issue #45,
# item 10): the stored network is read the other standard ways on the same images.


@pytest.fixture(scope="module")
def normalized_net() -> nn.Module:
    """A small conv net trained on CIFAR-10-normalized 16x16 synthetic images. Its max-pooled
    features depend on the input offset, so read as [0, 1] it keeps only a little of its skill:
    the zoo case, a model far above chance read rightly and just above the floor read wrongly."""
    from purify_backdoor.data.synthetic import synthetic_images
    from purify_backdoor.input_overrides import NORMALIZATIONS
    from purify_backdoor.models.normalized import Normalized
    from purify_backdoor.training import to_tensor

    train = synthetic_images(400, 16, seed=0)
    torch.manual_seed(0)
    inner = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )  # fmt: skip
    model = Normalized(inner, *NORMALIZATIONS["cifar10"])
    images, labels = to_tensor(train.images), torch.tensor(train.labels)
    optimizer = torch.optim.Adam(inner.parameters(), lr=0.01)
    for _ in range(300):
        batch = torch.randint(0, len(labels), (64,))
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return inner.eval()


@pytest.fixture(scope="module")
def clean_test():
    from purify_backdoor.data.synthetic import synthetic_images

    return synthetic_images(256, 16, seed=1)


def test_a_model_read_without_its_normalization_is_stopped_naming_the_flag(
    normalized_net, clean_test
):
    from purify_backdoor.in_memory import defend

    train = clean_test.images[:100], clean_test.labels[:100]
    test = clean_test.images, clean_test.labels
    raw = check_clean_accuracy(normalized_net, clean_test, torch.device("cpu"), seed=0)
    assert 0.19 < raw["clean_acc"] < 0.4 and not raw["low"]  # what the near-chance test let by
    with pytest.raises(PurifyError, match=r"^the model scores 2\d\.\d%.*pass --normalize \w+"):
        defend(normalized_net, *train, "finetune", {"epochs": 1}, test=test)
    accepted = defend(
        normalized_net, *train, "finetune", {"epochs": 1}, test=test, accept_low_accuracy=True
    )
    check = accepted.report["input"]["check"]
    assert check["accepted_low"] and check["better"].startswith("--normalize")
    assert (
        check["probes"]["--normalize cifar10"] > 0.8 and "--normalize none" not in check["probes"]
    )
    assert check["probes"]["--bgr"] is not None and check["probes"]["--input-scale 255"] is not None


def test_the_model_read_rightly_is_not_stopped_and_pays_no_probe(normalized_net, clean_test):
    from purify_backdoor.in_memory import defend

    result = defend(
        normalized_net, clean_test.images[:100], clean_test.labels[:100], "finetune",
        {"epochs": 1}, normalize="cifar10", test=(clean_test.images, clean_test.labels),
    )  # fmt: skip
    check = result.report["input"]["check"]
    assert check["clean_acc"] > 0.8 and check["probes"] is None and check["better"] is None
    assert "scores above 80.0%" in check["probes_skipped"]


def test_a_rightly_read_model_with_a_legitimately_low_accuracy_is_not_stopped(
    normalized_net, clean_test
):
    """Labels scrambled for 60% of the images: every reading loses alike, none is far better."""
    from purify_backdoor.input_check import check_input_convention
    from purify_backdoor.input_overrides import NORMALIZATIONS
    from purify_backdoor.models.normalized import Normalized

    labels = clean_test.labels.copy()
    labels[: int(0.6 * len(labels))] = (labels[: int(0.6 * len(labels))] + 3) % 10
    scrambled = ImageSet(clean_test.images, labels, clean_test.classes)
    model = Normalized(normalized_net, *NORMALIZATIONS["cifar10"])
    record = check_input_convention(model, scrambled, torch.device("cpu"), seed=0)
    assert 0.25 < record["clean_acc"] < 0.5 and record["better"] is None
    assert "--normalize none" in record["probes"] and "--normalize cifar10" not in record["probes"]
    assert record["warning"] is None


class Scored(nn.Module):
    """Right on exactly the images whose green channel is 0: reads the label from red."""

    def forward(self, x):
        label = (x[:, 0, 0, 0] * 255).round().long()
        label = torch.where(x[:, 1, 0, 0] > 0.5, (label + 1) % 10, label)
        return nn.functional.one_hot(label, 10).float()


def scored_images(right: float, count: int = 200) -> ImageSet:
    labels = np.arange(count) % 10
    images = np.zeros((count, 2, 2, 3), dtype=np.uint8)
    images[..., 0] = labels[:, None, None]
    images[int(right * count) :, :, :, 1] = 255
    return ImageSet(images, labels.astype(np.int64), tuple(str(k) for k in range(10)))


@pytest.mark.parametrize(
    ("measured", "best", "recorded", "stopped", "warned"),
    [
        (0.235, 0.85, None, True, False),  # the zoo WRN read as [0, 1]: far higher, far from chance
        (0.55, 0.90, 0.93, True, False),  # far below its record, another reading close to it
        (0.55, 0.90, None, False, False),  # 35 points, but not twice as far from chance
        (0.35, 0.40, None, False, False),  # a legitimately low model: nothing far better
        (0.795, 0.60, 0.8893, False, False),  # the shared NAD badnet model on JPEG: 9 points
        (0.55, 0.60, 0.93, False, True),  # far below its record, and no reading explains it
    ],
)
def test_the_decision_rule(monkeypatch, measured, best, recorded, stopped, warned):
    from purify_backdoor import input_check

    probes = {"--normalize cifar10": best, "--bgr": 0.1, "--input-scale 255": None}
    monkeypatch.setattr(input_check, "probe_conventions", lambda *args: probes)
    images, cpu = scored_images(measured), torch.device("cpu")
    check = input_check.check_input_convention
    if stopped:
        with pytest.raises(PurifyError, match=r"with --normalize cifar10 it scores .*; --accept"):
            check(Scored(), images, cpu, 0, recorded=recorded)
    record = check(Scored(), images, cpu, 0, accept_low=True, recorded=recorded)
    assert record["clean_acc"] == pytest.approx(measured) and record["probes"] == probes
    assert record["accepted_low"] == stopped and record["recorded_acc"] == recorded
    assert (record["better"] == "--normalize cifar10") == stopped
    assert (record["warning"] is not None) == warned
    if warned:
        assert "far below the 93.0% its checkpoint records" in record["warning"]


@pytest.mark.parametrize(
    ("measured", "recorded", "reason"),
    [(0.85, None, "scores above 80.0%"), (0.6, 0.62, "within 5 points"), (0.3, None, None)],
)
def test_probes_are_skipped_when_nothing_can_come_of_them(monkeypatch, measured, recorded, reason):
    from purify_backdoor import input_check

    monkeypatch.setattr(input_check, "probe_conventions", lambda *args: {})
    record = input_check.check_input_convention(
        Scored(), scored_images(measured), torch.device("cpu"), 0, recorded=recorded
    )
    assert (record["probes"] is None) == (reason is not None)
    assert reason is None or reason in record["probes_skipped"]


def test_the_stage_warns_on_stderr_when_the_record_is_far_above(monkeypatch, capsys):
    from purify_backdoor import input_check
    from purify_backdoor.plugin_types import RunContext
    from purify_backdoor.stages import DefenderData, check_input

    monkeypatch.setattr(input_check, "probe_conventions", lambda *args: {"--bgr": 0.5})
    data = DefenderData(None, scored_images(0.5))
    record = check_input(Scored(), data, RunContext(torch.device("cpu"), 0), False, recorded=0.95)
    assert record["warning"] and "Warning: the model scores 50.0%" in capsys.readouterr().err


def test_adapters_carry_the_accuracy_their_checkpoints_record(nad_checkpoint, tmp_path):
    from purify_backdoor.checkpoints import open_checkpoint
    from purify_backdoor.input_check import recorded_fraction

    assert open_checkpoint(nad_checkpoint)[1].recorded_accuracy == pytest.approx(0.10)
    assert recorded_fraction(0.0, percent=True) is None  # a fresh container: nothing measured
    assert recorded_fraction(torch.tensor(88.93), percent=True) == pytest.approx(0.8893)
    assert recorded_fraction("88.93", percent=True) is None


def test_backdoorbench_reads_the_attacks_final_test_accuracy(tmp_path, monkeypatch):
    import purify_backdoor.models.registry as registry
    from purify_backdoor.checkpoints import open_checkpoint
    from tests.adapters.test_backdoorbench import make_record

    monkeypatch.setitem(registry._PREACT, "preactresnet18", (1, 1, 1, 1))
    path = make_record(tmp_path)
    assert open_checkpoint(path)[1].recorded_accuracy is None
    (path.parent / "attack_df_summary.csv").write_text(
        ",train_epoch_num,test_acc,test_asr,test_ra\n"
        "last,99.0,0.9312,0.97,0.02\nvalid_max,99.0,0.9401,0.98,0.05\n"
        "exist_nan_value,False,False,False,False\n"
    )
    assert open_checkpoint(path)[1].recorded_accuracy == pytest.approx(0.9312)


def test_trojai_reads_the_trainers_final_clean_test_accuracy(tmp_path):
    from purify_backdoor.checkpoints import open_checkpoint
    from tests.adapters.test_trojai_folder import make_folder

    folder = make_folder(tmp_path)
    assert open_checkpoint(folder, trust=True)[1].recorded_accuracy is None
    stats = {"final_clean_data_test_acc": 97.5, "final_triggered_data_test_acc": 99.1}
    (folder / "model.pt.1.stats.json").write_text(json.dumps(stats))
    assert open_checkpoint(folder, trust=True)[1].recorded_accuracy == pytest.approx(0.975)
