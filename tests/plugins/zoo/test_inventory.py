"""What a zoo holds: a folder's model entries (side files skipped, BackdoorBench record folders
read through their attack_result.pt), or a manifest's rows with their per-model overrides."""

from __future__ import annotations

import json

import pytest

from purify_backdoor.errors import PurifyError
from purify_backdoor.zoo.inventory import ZooModel, read_zoo
from purify_backdoor.zoo.jobs import model_folder
from tests.plugins.test_cli import assert_one_line_error, invoke


def test_a_folder_lists_checkpoints_and_model_folders_and_skips_side_files(tmp_path):
    for name in ("b.pth.tar", "a.safetensors", "c.pt", "METADATA.csv", "README.md", ".hidden"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "id-00000001").mkdir()
    (tmp_path / "id-00000001" / "model.pt").write_bytes(b"x")
    (tmp_path / "badnet_0_1").mkdir()
    (tmp_path / "badnet_0_1" / "attack_result.pt").write_bytes(b"x")
    models = read_zoo(tmp_path)
    assert [m.name for m in models] == ["a", "b", "badnet_0_1", "c", "id-00000001"]
    record = models[2]
    assert record.path == tmp_path / "badnet_0_1" / "attack_result.pt"
    assert models[4].path == tmp_path / "id-00000001"


def test_an_output_folder_inside_the_zoo_is_not_a_model(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"x")
    (tmp_path / "purified").mkdir()
    assert [m.name for m in read_zoo(tmp_path, exclude=tmp_path / "purified")] == ["a"]


def test_a_csv_manifest_gives_per_model_overrides_relative_to_itself(tmp_path):
    (tmp_path / "models").mkdir()
    manifest = tmp_path / "zoo.csv"
    manifest.write_text(
        "path,attack,data,arch,name\n"
        "models/x.pth,badnet:target=5,cifar,wrn16-1,\n"
        "models/y.pth,,,,renamed\n"
    )
    x, y = read_zoo(manifest)
    assert (x.name, x.path, x.attack, x.data, x.arch) == (
        "x",
        tmp_path / "models" / "x.pth",
        "badnet:target=5",
        tmp_path / "cifar",
        "wrn16-1",
    )
    assert (y.name, y.attack, y.data, y.format) == ("renamed", None, None, None)


def test_a_jsonl_manifest_reads_one_object_a_line(tmp_path):
    manifest = tmp_path / "zoo.jsonl"
    rows = [{"path": "a.pt", "format": "state_dict"}, {"path": "b.pt", "name": "bee"}]
    manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    a, b = read_zoo(manifest)
    assert (a.name, a.format, b.name) == ("a", "state_dict", "bee")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("zoo.csv", "file,attack\na.pt,x\n", "no `path` column"),
        ("zoo.csv", "path,colour\na.pt,red\n", "unknown column 'colour'"),
        ("zoo.csv", "path\na.pt\nsub/a.pt\n", "two models are named 'a'"),
        ("zoo.csv", "path\n", "lists no models"),
        ("zoo.jsonl", '{"path": "a.pt"}\n[1]\n', "line 2 must be a JSON object"),
        ("zoo.jsonl", "{oops\n", "line 1 is not JSON"),
        ("zoo.jsonl", '{"name": "a"}\n', "has no `path`"),
        ("zoo.txt", "a.pt\n", "neither a folder nor a manifest"),
    ],
)
def test_bad_manifests_are_one_clear_error(tmp_path, name, text, fragment):
    manifest = tmp_path / name
    manifest.write_text(text)
    with pytest.raises(PurifyError, match=fragment.replace("[", r"\[")):
        read_zoo(manifest)


def test_a_missing_zoo_names_itself(tmp_path):
    with pytest.raises(PurifyError, match="does not exist"):
        read_zoo(tmp_path / "nowhere")


# Item 1 of issue #45: a manifest's `name` is the model's output folder under --out.
ESCAPING_NAMES = ["../../../x", "/tmp/x", "..", ".", "a/b", "a\\b", "a\x00b"]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_zoo_name_outside_out_is_refused_before_any_job(tmp_path, name):
    manifest = tmp_path / "zoo.jsonl"
    manifest.write_text(json.dumps({"path": "good.pth", "name": name}) + "\n")
    with pytest.raises(PurifyError, match="row 1: the name .* is not a plain folder name"):
        read_zoo(manifest)


def test_zoo_name_outside_out_is_one_line_and_writes_nothing(tmp_path, nad_checkpoint, tiny_data):
    zoo = tmp_path / "deep" / "er" / "zoo"
    zoo.mkdir(parents=True)
    nad_checkpoint.rename(zoo / "good.pth.tar")
    manifest = zoo / "zoo.jsonl"
    rows = [{"path": "good.pth.tar"}, {"path": "good.pth.tar", "name": "../../../x"}]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = zoo / "out"
    flags = ("--data", tiny_data, "-o", "epochs=1", "-q")
    result = invoke("zoo", manifest, "--plugin", "finetune", "--out", out, *flags)
    assert_one_line_error(result, "row 2", "'../../../x'", "one path component")
    assert not out.exists() and not (tmp_path / "deep" / "x").exists()


def test_a_linked_model_folder_outside_out_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "m").symlink_to(elsewhere)
    with pytest.raises(PurifyError, match="outside"):
        model_folder(ZooModel(name="m", path=tmp_path / "m.pth"), out)
