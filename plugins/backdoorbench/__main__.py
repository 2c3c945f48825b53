"""`python -m purify_backdoor.backdoorbench --result_file badnet_0_1 --defense medic`: the
command line of BackdoorBench's defenses (`defense/ft.py`): `--result_file`, `--yaml_path`,
`--ratio`, `--index`, `--device`, `--random_seed`, `--dataset_path`; the defense's own options
as `--name value` or `-o name=value`. Run from the checkout that holds `record/` and `config/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from purify_backdoor.backdoorbench.run import run_defense
from purify_backdoor.errors import PurifyError


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m purify_backdoor.backdoorbench",
        description="Run a purify defense on a BackdoorBench record, writing "
        "record/<result_file>/defense/purify-<defense>/ as BackdoorBench's defenses do.",
        epilog="Other --name value pairs are the defense's options (see purify --plugin NAME "
        "--help).",
    )
    parse.add_argument("--result_file", required=True, help="the attack's folder under record/")
    parse.add_argument("--defense", required=True, help="a purify defense: medic, nad, clp, ...")
    parse.add_argument("--yaml_path", type=Path, help="default: config/defense/<defense>/")
    parse.add_argument("--ratio", type=float, help="fraction of the clean train set (0.05)")
    parse.add_argument("--index", help="a file of clean train indices, one a line")
    parse.add_argument("--device", help="auto, cpu, cuda")
    parse.add_argument("--random_seed", type=int, help="seed of the draw and the defense")
    parse.add_argument("--dataset_path", help="the data root holding <dataset>/ (./data)")
    parse.add_argument("--data", type=Path, help="the clean data set itself, in any purify format")
    parse.add_argument("-o", action="append", default=[], metavar="NAME=VALUE")
    parse.add_argument("--overwrite", action="store_true", help="replace an earlier run's folder")
    parse.add_argument(
        "--defense_name", help="file the results as purify-NAME instead of purify-<defense>"
    )
    parse.add_argument("--accept_low_accuracy", action="store_true")
    return parse


def plugin_options(pairs: list[str], rest: list[str]) -> dict[str, str]:
    """`-o name=value` and the leftover `--name value` pairs, as purify's options."""
    options = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise PurifyError(f"-o {pair}: write it as -o name=value")
        options[name] = value
    if len(rest) % 2 or not all(name.startswith("--") for name in rest[::2]):
        raise PurifyError(f"cannot read the options {' '.join(rest)}; pass --name value pairs")
    options |= {name[2:]: value for name, value in zip(rest[::2], rest[1::2], strict=True)}
    return options


def main(argv: list[str] | None = None) -> int:
    args, rest = parser().parse_known_args(argv)
    given = {
        "ratio": args.ratio,
        "index": args.index,
        "device": args.device,
        "random_seed": args.random_seed,
        "dataset_path": args.dataset_path,
    }
    try:
        return run_defense(
            Path.cwd(),
            args.result_file,
            args.defense,
            plugin_options(args.o, rest),
            given,
            data=args.data,
            yaml_path=args.yaml_path,
            overwrite=args.overwrite,
            accept_low_accuracy=args.accept_low_accuracy,
            defense_name=args.defense_name,
        )
    except PurifyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
