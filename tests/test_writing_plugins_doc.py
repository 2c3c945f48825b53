"""The third-party plugin in docs/writing-plugins.md, installed as its own package and run end to
end through the `purify` entry points, exactly as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from purify_backdoor import hookspecs
from purify_backdoor.data.synthetic import synthetic_images
from tests.conftest import tiny_wideresnet

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", re.DOTALL)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("thirdparty")
    package = root / "purify-lastlayer"
    package.mkdir()
    files = FILE_BLOCK.findall(DOC.read_text())
    assert {name for name, _ in files} == {"pyproject.toml", "purify_lastlayer.py"}
    for name, text in files:
        (package / name).write_text(text)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(package)],
        check=True,
    )  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def purify(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "purify_backdoor", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
    )


def test_listed_with_its_package(installed):
    rows = json.loads(purify(installed, "plugins", "--json").stdout)
    mine = [row for row in rows if row["name"] == "lastlayer"]
    assert mine == [
        {
            "name": "lastlayer",
            "kind": "defense",
            "package": "purify-lastlayer",
            "version": "0.1.0",
            "description": "re-initialise and re-learn the classifier head on clean data",
        }
    ]


def test_help_and_end_to_end_run(installed, tmp_path):
    help_text = purify(installed, "--plugin", "lastlayer", "--help").stdout
    assert "--epochs" in help_text and "--lr" in help_text
    model = tmp_path / "model.pth"
    torch.save(tiny_wideresnet().state_dict(), model)
    data = synthetic_images(200, 16, seed=0)
    np.savez(tmp_path / "data.npz", x=data.images, y=data.labels)
    result = purify(
        installed, "--plugin", "lastlayer", model, "--data", tmp_path / "data.npz",
        "--ratio", "0.5", "--epochs", "2", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "model.purified.pth"
    report = json.loads((tmp_path / "model.purified.pth.report.json").read_text())
    assert report["plugin"]["package"] == "purify-lastlayer"
    assert report["plugin"]["options"] == {"epochs": 2, "lr": 0.05}
    assert report["details"] == {"head": "Linear"}
    before, after = (torch.load(p, weights_only=True) for p in (model, out))
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])


def test_hook_reference_lists_every_hook():
    doc = DOC.read_text()
    reference = doc[doc.index("## Hook reference") :]
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert len(hooks) == 6
    for name in hooks:
        assert f"`{name}(" in reference, name
