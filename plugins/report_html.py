"""The report as a person reads it: one self-contained HTML file (inline CSS, pictures as PNG data
URIs, no scripts, no fonts, no links out), drawn from the JSON report alone so `purify report`
can draw it again. Charts need matplotlib; without it the page says so and keeps its tables."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write
from purify_backdoor.errors import PurifyError
from purify_backdoor.evaluation import format_metric, is_breakdown
from purify_backdoor.figures import MATPLOTLIB_MISSING, Figure, plot_png

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; color: #fff; }
.purified { background: #2a7d2e; } .unchanged { background: #a66b00; }
.failed { background: #b3261e; }
.note { color: #666; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.9em; color: #444; max-width: 40em; }
.strip td { text-align: center; font-size: 0.85em; }
.right { color: #2a7d2e; } .wrong { color: #b3261e; font-weight: bold; }
.pair { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""

METRIC_ROWS = (
    "clean_acc", "asr", "robust_acc", "functionality_l2", "agreement", "parameters",
    "weight_bytes",
)  # fmt: skip


def html_path_for(report_json: Path) -> Path:
    """`model.purified.pt.report.json` -> `model.purified.pt.report.html`."""
    name = report_json.name
    stem = name[: -len(".json")] if name.endswith(".json") else name
    return report_json.with_name(stem + ".html")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(png: bytes | str) -> str:
    """PNG bytes, or their base64 text as the JSON report keeps them, as a data URI."""
    text = png if isinstance(png, str) else base64.b64encode(png).decode("ascii")
    return f"data:image/png;base64,{text}"


def image_tag(png: bytes | str, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(png)}" alt="{esc(alt)}"{size}>'


def figure_tag(figure: Figure) -> str:
    return (
        f"<figure>{image_tag(figure.png, figure.caption)}"
        f"<figcaption>{esc(figure.caption)}</figcaption></figure>"
    )


def table(
    header: list[str], rows: list[list[str]], numeric_from: int = 1, numeric_to: int | None = None
) -> str:
    """Cells are HTML already (escape them first); columns from `numeric_from` up to (not
    including) `numeric_to` align right."""
    numeric = range(numeric_from, len(header) if numeric_to is None else numeric_to)
    head = "".join(f"<th>{cell}</th>" for cell in header) if any(header) else ""
    head = f"<tr>{head}</tr>" if head else ""
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if index in numeric else f"<td>{cell}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def status_badge(status: str) -> str:
    failed = status in ("failed", "broken")
    kind = "purified" if status == "purified" else "failed" if failed else "unchanged"
    return f'<span class="status {kind}">{esc(status)}</span>'


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_report(report: dict[str, Any]) -> str:
    """The HTML page of one run's JSON report."""
    name = Path(report["input"]["path"]).name
    sections = [
        f"<h1>purify: {esc(report['plugin']['name'])} on {esc(name)} "
        f"{status_badge(report.get('status', 'purified'))}</h1>",
    ]
    if report.get("status_reason"):
        sections.append(f"<p>{esc(report['status_reason'])}</p>")
    sections += [
        _metrics_section(report),
        _run_section(report),
        _pictures_section(report),
        _figures_section(report),
        _details_section(report),
    ]
    return page(f"purify report: {name}", "".join(sections))


def _metrics_section(report: dict[str, Any]) -> str:
    metrics = report.get("metrics")
    rows = []
    if metrics:
        before, after = metrics["before"], metrics["after"]
        others = sorted(name for name in set(before) - set(METRIC_ROWS) if not is_breakdown(name))
        for metric in (*METRIC_ROWS, *others):
            if metric in before or metric in after:
                rows.append(
                    [
                        esc(metric),
                        esc(format_metric(metric, before[metric])) if metric in before else "-",
                        esc(format_metric(metric, after[metric])) if metric in after else "-",
                    ]
                )
        if "der" in metrics:
            rows.append(["DER", "", esc(format_metric("der", metrics["der"]))])
    rows.append(["defense time", "", f"{report.get('defense_time_s', 0):.1f} s"])
    rows.append(["wall time", "", f"{report.get('wall_time_s', 0):.1f} s"])
    memory = f"{report.get('peak_rss_mib', 0):.0f} MiB"
    if "peak_gpu_mib" in report:
        memory += f" (GPU {report['peak_gpu_mib']:.0f} MiB)"
    rows.append(["peak memory", "", memory])
    note = "" if metrics else '<p class="note">No test data was given: no metrics.</p>'
    return "<h2>Before and after</h2>" + note + table(["metric", "before", "after"], rows)


def _run_section(report: dict[str, Any]) -> str:
    source, output, plugin = report["input"], report["output"], report["plugin"]
    written = "written" if output.get("written") else "not written"
    attack = report.get("attack")
    rows = [
        ["input", esc(source["path"])],
        ["input sha256", f"<code>{esc(source.get('sha256'))}</code>"],
        ["format / architecture", esc(f"{source.get('format')} / {source.get('arch')}")],
        ["input convention", esc(convention_text(source.get("convention")))],
        ["input check", esc(check_text(source.get("check")))],
        ["output", esc(f"{output['path']} ({output.get('format')}, {written})")],
        ["defense", esc(f"{plugin['name']} ({plugin.get('package')} {plugin.get('version')})")],
        ["options", f"<code>{esc(json.dumps(plugin.get('options', {})))}</code>"],
        ["attack", esc(attack_text(attack))],
        ["seed / device", esc(f"{report.get('seed')} / {report.get('device')}")],
        ["clean images", esc((report.get("data") or {}).get("clean_images"))],
        ["test images", esc((report.get("data") or {}).get("test_images"))],
        [
            "versions",
            esc(", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())),
        ],
        [
            "machine",
            esc(", ".join(f"{k} {v}" for k, v in (report.get("machine") or {}).items())),
        ],
    ]
    return "<h2>Run</h2>" + table(["", ""], rows, numeric_from=2)


def convention_text(convention: dict[str, Any] | None) -> str:
    """How the stored network was fed: the format's convention or the user's flags."""
    if not convention:
        return "not recorded"
    parts = [convention.get("preprocessing") or "RGB in [0, 1]"]
    if convention.get("mean"):
        parts.append(f"mean {convention['mean']}, std {convention['std']}")
    if convention.get("bgr"):
        parts.append("BGR")
    if convention.get("scale", 1.0) != 1.0:
        parts.append(f"values in [0, {convention['scale']:g}]")
    return "; ".join(parts)


def check_text(check: dict[str, Any] | None) -> str:
    """The clean-accuracy check made before the defense ran (input_check.py)."""
    if not check:
        return "not made (no data)"
    text = (
        f"{100 * check['clean_acc']:.1f}% on {check['images']} clean images "
        f"(chance {100 * check['chance']:.1f}%, floor {100 * check['floor']:.1f}%)"
    )
    return text + (": near chance, run anyway (--accept-low-accuracy)" if check["low"] else "")


def attack_text(attack: dict[str, Any] | None) -> str:
    """The report's attack record as the spec a user types (`badnet:pattern=grid,target=5`)."""
    if not attack:
        return "unknown (no --attack, none stored in the checkpoint)"
    options = ",".join(f"{key}={value}" for key, value in sorted(attack["options"].items()))
    return f"{attack['name']}:{options}"


def _pictures_section(report: dict[str, Any]) -> str:
    pictures = report.get("pictures")
    if not pictures:
        return (
            '<h2>Per class</h2><p class="note">This report has no per-class data (no test '
            "data, or it was written with --no-html).</p>"
        )
    classes = pictures["classes"]
    before, after = pictures["before"], pictures["after"]
    parts = ["<h2>Per class</h2>"]
    chart = plot_png(lambda fig: _class_bars(fig, classes, before, after, "per_class_acc"))
    rows = _class_rows(classes, before, after, "per_class_acc")
    parts.append(
        '<div class="pair">'
        + _chart_or_note(chart, "clean accuracy per class, before and after")
        + table(["class", "clean acc before", "clean acc after"], rows)
        + "</div>"
    )
    if "triggered_to" in before:
        chart = plot_png(lambda fig: _class_bars(fig, classes, before, after, "triggered_to"))
        target = pictures.get("target")
        goal = "" if target is None else f" (the attack's target: {target} {classes[target]})"
        parts.append("<h3>Where triggered images go</h3>")
        rows = _class_rows(classes, before, after, "triggered_to")
        parts.append(
            '<div class="pair">'
            + _chart_or_note(chart, f"share of triggered test images per predicted class{goal}")
            + table(["predicted class", "before", "after"], rows)
            + "</div>"
        )
    if pictures.get("strip"):
        parts.append(_strip(pictures["strip"], classes))
    return "".join(parts)


def _class_rows(classes: list[str], before: dict, after: dict, key: str) -> list[list[str]]:
    pairs = zip(classes, before[key], after[key], strict=True)
    return [
        [esc(f"{index} {name}"), percent(b), percent(a)] for index, (name, b, a) in enumerate(pairs)
    ]


def _chart_or_note(png: bytes | None, caption: str) -> str:
    if png is None:
        return f'<p class="note">No chart: {esc(MATPLOTLIB_MISSING)}.</p>'
    return figure_tag(Figure(caption, png))


def _class_bars(fig: Any, classes: list[str], before: dict, after: dict, key: str) -> None:
    axes = fig.subplots()
    positions = range(len(classes))
    width = 0.4
    values_before = [v or 0 for v in before[key]]
    values_after = [v or 0 for v in after[key]]
    axes.bar([p - width / 2 for p in positions], values_before, width, label="before")
    axes.bar([p + width / 2 for p in positions], values_after, width, label="after")
    axes.set_xticks(list(positions), classes, rotation=45, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("clean accuracy" if key == "per_class_acc" else "share of triggered images")
    axes.legend(fontsize=8)


def _strip(strip: dict[str, Any], classes: list[str]) -> str:
    def label(index: int) -> str:
        return esc(classes[index] if 0 <= index < len(classes) else index)

    parts = ["<h3>Test images and predictions</h3>"]
    for kind in ("clean", "triggered"):
        if kind not in strip:
            continue
        items = strip[kind]
        cells = [
            "".join(f"<td>{image_tag(item['image'], label(item['label']))}</td>" for item in items)
        ]
        rows = [f"<tr><th>{kind}</th>{cells[0]}</tr>"]
        rows.append(
            "<tr><th>true</th>"
            + "".join(f"<td>{label(item['label'])}</td>" for item in items)
            + "</tr>"
        )
        for model in ("before", "after"):
            row = []
            for item in items:
                predicted = item["predicted"][model]
                mark = "right" if predicted == item["label"] else "wrong"
                row.append(f'<td class="{mark}">{label(predicted)}</td>')
            rows.append(f"<tr><th>{model}</th>{''.join(row)}</tr>")
        parts.append(f'<table class="strip">{"".join(rows)}</table>')
    return "".join(parts)


def _figures_section(report: dict[str, Any]) -> str:
    figures = report.get("figures") or {}
    notes = report.get("figure_notes") or []
    if not figures and not notes:
        return ""
    parts = [f"<h2>What {esc(report['plugin']['name'])} shows</h2>"]
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    for name, record in figures.items():
        figure = Figure.from_record(record)
        parts.append(f'<div id="figure-{esc(name)}">{figure_tag(figure)}</div>')
    return "".join(parts)


def _details_section(report: dict[str, Any]) -> str:
    details = report.get("details")
    if not details:
        return ""
    text = json.dumps(details, indent=1, default=str)
    if len(text) > 20000:
        text = text[:20000] + "\n..."
    return (
        f"<h2>Defense details</h2><details><summary>JSON</summary><pre>{esc(text)}</pre></details>"
    )


def read_report(path: Path) -> dict[str, Any]:
    """A saved JSON report, or a one-line error that says what is wrong with the file."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PurifyError(f"report {path} does not exist; pass a .report.json file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PurifyError(f"report {path} is not a JSON report ({error})") from None
    if not isinstance(report, dict) or not {"input", "plugin", "output"} <= report.keys():
        raise PurifyError(f"{path} is not a purify report (no input, plugin and output)")
    return report


def write_report_html(report: dict[str, Any], path: Path) -> None:
    text = render_report(report)
    atomic_write(path, lambda tmp: tmp.write_text(text))
