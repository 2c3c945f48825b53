"""The HTML report: a tiny run of every shipped defense writes a page that parses, reaches
nothing outside itself, and shows the pictures the defense declared; `--no-html` writes none;
`purify report` draws the same page again from the JSON alone."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from purify_backdoor.figures import MATPLOTLIB_MISSING
from purify_backdoor.report_html import html_path_for, render_report
from tests.plugins.test_cli import assert_one_line_error, invoke

ATTACK = "badnet:pattern=grid,target=5"
TINY = {
    "finetune": ["-o", "epochs=1"],
    "fineprune": ["-o", "epochs=1"],
    "nad": ["-o", "teacher_epochs=1", "-o", "epochs=1"],
    "anp": ["-o", "iterations=3", "-o", "batch_size=16", "-o", "threshold=0.99"],
    "clp": ["-o", "u=0"],
    "medic": ["-o", "epochs=1"],
    "baeraser": [
        "-o", "generator_steps=2", "-o", "hidden=16", "-o", "labels=2,5", "-o", "tau=0",
        "-o", "unlearn_steps=2",
    ],
    "cc": [
        "-o", "synthetic=32", "-o", "synthesis_iterations=3", "-o", "epochs=1",
        "-o", "compression=2",
    ],
}  # fmt: skip
DECLARED = {
    "medic": {"activations"},
    "baeraser": {"triggers"},
    "cc": {"spectrum"},
    "clp": {"pruned"},
    "anp": {"pruned"},
}
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attribute(self, name: str) -> list[str]:
        return [attrs[name] or "" for _, attrs in self.tags if name in attrs]


def assert_self_contained(page: Page) -> None:
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed"}
    assert all(src.startswith("data:image/png;base64,") for src in page.attribute("src"))
    for src in page.attribute("src"):
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    assert not any(href.startswith(("http:", "https:", "//")) for href in page.attribute("href"))
    assert "url(" not in "".join(page.text)


@pytest.mark.parametrize("defense", sorted(TINY))
def test_every_defense_writes_a_self_contained_page_with_its_pictures(
    defense, nad_checkpoint, tiny_data, tmp_path
):
    out = tmp_path / "model.purified.pth.tar"
    result = invoke(
        "--plugin", defense, nad_checkpoint, "--data", tiny_data, "--ratio", "0.5",
        "--attack", ATTACK, "--out", out, "-q", *TINY[defense],
    )  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    report_json = out.with_name(out.name + ".report.json")
    page_path = html_path_for(report_json)
    text = page_path.read_text()
    page = Page(text)
    assert_self_contained(page)
    report = json.loads(report_json.read_text())
    assert set(report["figures"]) == DECLARED.get(defense, set())
    ids = set(page.attribute("id"))
    assert {f"figure-{name}" for name in DECLARED.get(defense, ())} <= ids
    body = "".join(page.text)
    for heading in ("Before and after", "Per class", "Where triggered images go", "Run"):
        assert heading in body
    assert f"torch_threads {report['machine']['torch_threads']}" in body
    assert report["pictures"]["target"] == 5
    for model in ("before", "after"):
        shares = report["pictures"][model]["triggered_to"]
        assert len(shares) == 10 and abs(sum(shares) - 1) < 1e-6
        assert len(report["pictures"][model]["per_class_acc"]) == 10
    assert len(report["pictures"]["strip"]["triggered"]) == 8
    assert len(page.attribute("src")) >= 16 + len(DECLARED.get(defense, ()))


def test_no_html_writes_no_page_and_report_draws_it_again(nad_checkpoint, tiny_data, tmp_path):
    plain = tmp_path / "plain.pth.tar"
    common = ["--data", tiny_data, "--ratio", "0.5", "--attack", ATTACK, "-q", "-o", "u=0"]
    result = invoke("--plugin", "clp", nad_checkpoint, "--out", plain, "--no-html", *common)
    assert result.exit_code == 0, result.output
    plain_json = plain.with_name(plain.name + ".report.json")
    assert not html_path_for(plain_json).exists()
    assert json.loads(plain_json.read_text())["pictures"] is None

    drawn = tmp_path / "drawn.pth.tar"
    assert invoke("--plugin", "clp", nad_checkpoint, "--out", drawn, *common).exit_code == 0
    drawn_json = drawn.with_name(drawn.name + ".report.json")
    first = html_path_for(drawn_json).read_text()
    again = tmp_path / "again.html"
    result = invoke("report", drawn_json, "--out", again)
    assert result.exit_code == 0, result.output
    assert again.read_text() == first


def test_without_matplotlib_the_page_says_so_and_keeps_its_tables(
    nad_checkpoint, tiny_data, tmp_path, monkeypatch
):
    out = tmp_path / "m.pth.tar"
    common = ["--data", tiny_data, "--ratio", "0.5", "--attack", ATTACK, "-q", "-o", "u=0"]
    assert invoke("--plugin", "clp", nad_checkpoint, "--out", out, *common).exit_code == 0
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    monkeypatch.setattr("purify_backdoor.report_html.plot_png", lambda *args, **kwargs: None)
    page = Page(render_report(report))
    body = "".join(page.text)
    assert MATPLOTLIB_MISSING in body and "clean acc before" in body
    assert len(page.attribute("src")) == 16 + 1  # the strip and the defense's own picture


def test_report_of_a_file_that_is_no_report_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert_one_line_error(invoke("report", bad), "is not a purify report")
    assert_one_line_error(invoke("report", tmp_path / "none.json"), "does not exist")
