"""Recorded results are portable: no file under docs/results/ names a folder of the machine that
made it (results record paths relative to the checkout, as benchmarks/recorded.py writes them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?:^|[\s\"'=(,])(/(?:[\w.+-]+/)+[\w.+-]*|[A-Za-z]:\\\\?[\w.+-]+)", re.M)


def absolute_paths(text: str) -> list[str]:
    return ABSOLUTE.findall(text)


def test_no_result_file_holds_an_absolute_path():
    found = {
        str(path.relative_to(ROOT)): hits
        for path in sorted((ROOT / "docs" / "results").rglob("*"))
        if path.is_file() and path.suffix in {".json", ".csv", ".md", ".txt"}
        if (hits := absolute_paths(path.read_text()))
    }
    assert found == {}


def test_the_check_sees_posix_and_windows_paths():
    assert absolute_paths('"command": "purify /work/main/out/x.pth --data ../shared/d"') == [
        "/work/main/out/x.pth"
    ]
    assert absolute_paths('{"work": "C:\\\\Users\\\\me"}') and not absolute_paths("img/s 3/4")
