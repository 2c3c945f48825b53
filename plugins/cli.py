"""The `purify` command line. `purify --plugin NAME MODEL ...` runs the default `run` command; the
chosen plugin's declared options become typed flags (`--tau 5`) next to `-o tau=5`."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch
from click_default_group import DefaultGroup

from purify_backdoor.attack_spec import attack_options
from purify_backdoor.backdoor_training import PROFILES
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import KINDS, collect, get_manager, registered, reserve_option_names
from purify_backdoor.options import Bounds, Option, above, at_least, between, parse_assignments
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.runtime import resolve_device, run_context

_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}


class PurifyGroup(DefaultGroup):
    """A default group whose errors are one line (`Error: ...`, exit 2) and whose leading options
    (`purify --plugin medic --help`) go to the default command. Plugins' commands are added on
    first lookup rather than at import, so a broken plugin package is reported as such an error."""

    plugin_commands_added = False

    def _add_plugin_commands(self) -> None:
        if not self.plugin_commands_added:
            get_manager().hook.register_commands(cli=self)
            self.plugin_commands_added = True

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ("--help", "--version"):
            args.insert(0, self.default_cmd_name)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """click turns an EOFError into the Abort that Ctrl-C gives; here it is what it is, a file
        that ended early (numpy reading an empty array file), so it is a one-line input error."""
        try:
            return super().invoke(ctx)
        except EOFError as error:
            raise PurifyError(_ended_early(error)) from None

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort as error:  # a RuntimeError too, so before the memory check below
            if not isinstance(error.__cause__, KeyboardInterrupt):  # only Ctrl-C interrupts
                click.echo(f"Error: {_ended_early(error.__cause__)}", err=True)
                sys.exit(2)
            click.echo("Interrupted. Re-run the same command with --resume to continue.", err=True)
            sys.exit(130)
        except (MemoryError, RuntimeError) as error:
            out_of_memory = isinstance(error, (torch.OutOfMemoryError, MemoryError))
            if not (out_of_memory or "can't allocate memory" in str(error)):
                raise
            click.echo(f"Error: {_out_of_memory(error)}", err=True)
            sys.exit(2)
        sys.exit(result if isinstance(result, int) else 0)


def _ended_early(error: BaseException | None) -> str:
    detail = " ".join(str(error or "").split())[:120]
    return (
        f"an input file ended before its data did (EOFError: {detail or 'no data left'}); "
        f"check that the model and data files are complete, or copy them again"
    )


def _out_of_memory(error: BaseException) -> str:
    detail = " ".join(str(error).split())[:120]
    return (
        f"out of memory ({type(error).__name__}: {detail}); use a smaller batch size "
        f"(-o batch_size=N) or fewer clean images (--n-clean N)"
    )


def _peek_plugin(args: list[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg in ("-p", "--plugin") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--plugin="):
            return arg.split("=", 1)[1]
    return None


def _click_option(option: Option) -> click.Option:
    kind = click.Choice(option.choices) if option.choices else _CLICK_TYPES[option.type]
    flag = option.flag
    declaration = f"{flag}/--no-{flag[2:]}" if option.type is bool else flag
    return click.Option(
        [declaration, option.name],
        type=kind,
        default=None,
        help=option.described,
    )


def within(bounds: Bounds, example: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that refuses a host flag's value outside `bounds` (or not finite) as it is
    parsed, in the same one-line words as a plugin option's: a 0 or negative value would
    otherwise run and fail deep inside, or hand the input back as if purified."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        finite = not isinstance(value, float) or math.isfinite(value)
        if value is None or (finite and value in bounds):
            return value
        flag = max(param.opts, key=len)
        raise PurifyError(f"{flag} must be {bounds}, got {value}; for example {flag} {example}")

    return check


SEEDS = between(0, 2**32 - 1)  # what numpy's legacy seeding accepts, so every generator takes it


class PluginCommand(click.Command):
    """A command whose flags grow with the options the chosen plugin declares."""

    def declared(self, item: Any) -> tuple[Option, ...]:
        return attack_options(item) if self.kind == "attack" else item.options

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.base_params = list(self.params)
        self.base_help = self.help

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self.params, self.help = list(self.base_params), self.base_help
        name = _peek_plugin(args)
        entry = registered(self.kind, name) if name else None
        ctx.meta["plugin_entry"] = entry
        item = None if entry is None else entry.item
        declared = () if item is None else self.declared(item)
        if item is not None:
            self.params += [_click_option(option) for option in declared]
            self.help = f"{self.base_help}\n\n{self.kind} '{item.name}': {item.description}"
        ctx.meta["plugin_options"] = [option.name for option in declared]
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            valid = ", ".join(o.flag for o in declared) if item else "(choose --plugin first)"
            owner = f"{self.kind} '{item.name}'" if item else self.name
            raise PurifyError(
                f"unknown option {error.option_name} for {owner}; its options: {valid} "
                f"(or -o key=value); see --help"
            ) from None


def _plugin_settings(ctx: click.Context, kwargs: dict[str, Any], pairs: tuple[str, ...]) -> dict:
    settings: dict[str, Any] = parse_assignments(pairs)
    for name in ctx.meta.get("plugin_options", []):
        value = kwargs.pop(name, None)
        if value is not None:
            settings[name] = value
    return settings


def host_option_names(kind: str) -> frozenset[str]:
    """Every name the host's own long flags and their destinations already take on the command
    that turns this kind's plugin options into flags (`--n-clean` -> n_clean, `-o/--option` ->
    option and option_pairs): a plugin option of that name would clash with one of them. Kinds
    no command gives flags reserve none."""
    names: set[str] = set()
    for command in cli.commands.values():
        if isinstance(command, PluginCommand) and command.kind == kind:
            names.add("help")
            for param in command.base_params:
                flags = [f for f in (*param.opts, *param.secondary_opts) if f.startswith("--")]
                names.update(flag[2:].replace("-", "_") for flag in flags)
                names.add(param.name)
    return frozenset(names)


def device_options(func: Any) -> Any:
    """Where work runs and whether it shows progress."""
    for decorator in reversed(
        (
            click.option(
                "--device",
                default="auto",
                show_default=True,
                help="auto (GPU when present), cpu, cuda, cuda:N",
            ),
            click.option("-q", "--quiet", is_flag=True, help="no progress bars"),
        )
    ):
        func = decorator(func)
    return func


def common_options(func: Any) -> Any:
    """Flags every job takes: reproducibility, device and verbosity."""
    return click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        callback=within(SEEDS, "0"),
        help=f"random seed, {SEEDS}",
    )(device_options(func))


def checkpoint_options(func: Any) -> Any:
    """Flags for reading a checkpoint."""
    for decorator in reversed(
        (
            click.option(
                "--format",
                "format_",
                default="auto",
                show_default=True,
                help="checkpoint format (see `purify plugins`); auto detects by content",
            ),
            click.option("--arch", help="architecture for plain state dicts, e.g. wrn16-1"),
            click.option(
                "--trust-checkpoint",
                is_flag=True,
                help="allow formats that unpickle code (only for files you trust)",
            ),
            click.option(
                "--normalize",
                help="the model's mean/std normalization by name (cifar10, cifar100, imagenet, "
                "tiny, cifar10-kuangliu, none), over what the format records",
            ),
            click.option("--mean", help="the model's per-channel mean, R,G,B (with --std)"),
            click.option("--std", help="the model's per-channel std, R,G,B (with --mean)"),
            click.option("--bgr", is_flag=True, help="the model takes BGR channel order"),
            click.option(
                "--input-scale",
                type=float,
                default=1.0,
                show_default=True,
                callback=within(above(0), "255"),
                help="the model takes values in [0, SCALE] (255 for 0-255 inputs), > 0",
            ),
            click.option(
                "--trojai-round",
                help="TrojAI folders: the round whose preprocessing to use (1, 2, 3, 4, 11, "
                "mitigation), when it is not recognised",
            ),
            click.option(
                "--accept-low-accuracy",
                is_flag=True,
                envvar="PURIFY_ACCEPT_LOW_ACCURACY",
                help="run even when the model scores near chance on your clean images, and "
                "write the result when the defense leaves it so (or set "
                "PURIFY_ACCEPT_LOW_ACCURACY=1)",
            ),
        )
    ):
        func = decorator(func)
    return func


def input_override(kwargs: dict[str, Any]) -> Any:
    """The input convention the user gave on the command line."""
    from purify_backdoor.input_overrides import InputOverride, parse_channels

    return InputOverride(
        normalize=kwargs["normalize"],
        mean=parse_channels(kwargs["mean"], "--mean"),
        std=parse_channels(kwargs["std"], "--std"),
        bgr=kwargs["bgr"],
        scale=kwargs["input_scale"],
    )


def defense_options(func: Any) -> Any:
    """Flags of a defense run: how much clean data, the plugin's options, the output format."""
    for decorator in reversed(
        (
            click.option(
                "--ratio",
                type=float,
                default=0.05,
                show_default=True,
                callback=within(between(0, 1, min_open=True), "0.05"),
                help="fraction of the training images the defender holds as clean data, in (0, 1]",
            ),
            click.option(
                "--n-clean",
                type=int,
                callback=within(at_least(1), "500"),
                help="number of clean images instead of --ratio, >= 1",
            ),
            click.option(
                "-o",
                "--option",
                "option_pairs",
                multiple=True,
                metavar="KEY=VALUE",
                help="set a plugin option (repeatable)",
            ),
            click.option(
                "--save-format",
                type=click.Choice(["native", "safetensors"]),
                default="native",
                show_default=True,
                help="native: the input's own format (a drop-in file); safetensors: tensors only",
            ),
        )
    ):
        func = decorator(func)
    return func


def executor_options(func: Any) -> Any:
    """Where a many-job command (zoo, bench) runs its jobs."""
    for decorator in reversed(
        (
            click.option(
                "--executor",
                type=click.Choice(["local", "ray"]),
                default="local",
                show_default=True,
                help="local: processes on this machine; ray: a Ray cluster (pip install "
                "'purify-backdoor[ray]')",
            ),
            click.option(
                "-j",
                "--jobs",
                type=int,
                help="jobs at once  [default: local 1; ray: as many as the cluster fits]",
            ),
            click.option(
                "--address",
                help="Ray cluster to join (ray start --head prints it)  [default: RAY_ADDRESS, "
                "else a new local Ray instance]",
            ),
            click.option(
                "--cpus-per-task",
                type=float,
                help="CPU threads per job; Ray's num_cpus  [default: local cores/jobs; ray 1]",
            ),
            click.option(
                "--gpus-per-task",
                type=float,
                help="Ray's num_gpus per task, fractions allowed (local jobs get one GPU each, "
                "round robin)",
            ),
        )
    ):
        func = decorator(func)
    return func


def _executor(kwargs: dict[str, Any], device: str) -> Any:
    from purify_backdoor.executors import make_executor

    return make_executor(
        kwargs.pop("executor"),
        jobs=kwargs.pop("jobs"),
        device=device,
        address=kwargs.pop("address"),
        cpus_per_task=kwargs.pop("cpus_per_task"),
        gpus_per_task=kwargs.pop("gpus_per_task"),
    )


@click.group(cls=PurifyGroup, default="run", default_if_no_args=False)
@click.version_option(package_name="purify-backdoor")
def cli() -> None:
    """Remove backdoors from trained image classifiers.

    \b
    purify --plugin medic model.pth.tar --data cifar10/   purify a checkpoint
    purify plugins                                        list installed plugins
    purify demo                                           end-to-end demo, no download
    """


@cli.command(cls=PluginCommand, kind="defense")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-p", "--plugin", required=True, help="defense to run (see `purify plugins`)")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="data set: ImageFolder (train/ and test/), .tar.gz of one, or .npz",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="purified model path  [default: <stem>.purified.<ext> beside the input]",
)
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    help="write <stem>.purified.<ext> and its report into this folder instead",
)
@click.option(
    "--defense-name",
    help="the name outputs are filed under where a format files them by defense, instead of the "
    "plugin's (BackdoorBench: attack_result.purify-NAME.pt, defense/purify-NAME/)",
)
@checkpoint_options
@click.option(
    "--attack",
    help="attack spec for before/after metrics, e.g. "
    "badnet:pattern=grid,target=5  [default: the one stored in the checkpoint]",
)
@defense_options
@click.option("--resume", is_flag=True, help="continue an interrupted run from its last epoch")
@click.option("--overwrite", is_flag=True, help="replace an existing output file")
@click.option(
    "--no-html",
    is_flag=True,
    help="skip <output>.report.html (and the pictures it needs) beside the JSON report",
)
@click.option(
    "--write-unchanged",
    is_flag=True,
    help="write the output even when the defense found nothing to remove (exit status 3 still)",
)
@common_options
@click.pass_context
def run(
    ctx: click.Context, model: Path, plugin: str, option_pairs: tuple[str, ...], **kwargs: Any
) -> int:
    """Purify MODEL with a defense plugin and write the result in the same format.

    Exit status: 0 purified, 2 bad input or failure, 3 the defense found nothing to remove and
    left the model unchanged (no output is written unless --write-unchanged), 4 the defense left
    the model near chance on your clean images (no output is written unless
    --accept-low-accuracy)."""
    from purify_backdoor.evaluation import metrics_table
    from purify_backdoor.purification import (
        BROKEN_EXIT,
        UNCHANGED_EXIT,
        PurifyRequest,
        purify_checkpoint,
    )
    from purify_backdoor.report import report_path_for
    from purify_backdoor.report_html import html_path_for
    from purify_backdoor.stages import BROKEN

    settings = _plugin_settings(ctx, kwargs, option_pairs)
    context = run_context(kwargs["seed"], kwargs["device"], kwargs["quiet"])
    context.resume = kwargs["resume"]
    request = PurifyRequest(
        model_path=model,
        plugin=plugin,
        options=settings,
        data=kwargs["data"],
        out=kwargs["out"],
        format=kwargs["format_"],
        arch=kwargs["arch"],
        attack=kwargs["attack"],
        ratio=kwargs["ratio"],
        n_clean=kwargs["n_clean"],
        overwrite=kwargs["overwrite"],
        trust_checkpoint=kwargs["trust_checkpoint"],
        save_format=kwargs["save_format"],
        write_unchanged=kwargs["write_unchanged"],
        out_dir=kwargs["out_dir"],
        html=not kwargs["no_html"],
        override=input_override(kwargs),
        accept_low_accuracy=kwargs["accept_low_accuracy"],
        trojai_round=kwargs["trojai_round"],
        defense_name=kwargs["defense_name"],
    )
    report = purify_checkpoint(request, context, ctx.meta["plugin_entry"])
    if report["metrics"]:
        columns = {"before": report["metrics"]["before"], "after": report["metrics"]["after"]}
        click.echo(metrics_table(columns))
        if "der" in report["metrics"]:
            click.echo(f"DER: {100 * report['metrics']['der']:.2f}%")
    out = Path(report["output"]["path"])
    if report["status"] == "purified":
        click.echo(f"purified model: {out}\nreport: {report_path_for(out)}")
        if not kwargs["no_html"]:
            click.echo(f"html report: {html_path_for(report_path_for(out))}")
        return 0
    if report["status"] == BROKEN:
        click.echo(
            f"purify: {plugin}: {report['status_reason']}, so no file was written; try milder "
            f"options of the defense, or --accept-low-accuracy to write it anyway",
            err=True,
        )
        click.echo(f"report: {report_path_for(out)}")
        return BROKEN_EXIT
    kept = f"written anyway to {out}" if report["output"]["written"] else "no file was written"
    click.echo(
        f"purify: {plugin}: {report['status']} ({report['status_reason']}); the model is "
        f"unchanged and {kept} (--write-unchanged writes it)",
        err=True,
    )
    click.echo(f"report: {report_path_for(out)}")
    return UNCHANGED_EXIT


@cli.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: name, kind, package, version, description."""
    rows = [
        {
            "name": entry.item.name,
            "kind": kind,
            "package": entry.package,
            "version": entry.version,
            "description": entry.item.description,
        }
        for kind in KINDS
        for entry in collect(kind).values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    keys = ("name", "kind", "package", "version")
    click.echo("  ".join(key.upper().ljust(widths[key]) for key in keys) + "  DESCRIPTION")
    for row in rows:
        click.echo(
            "  ".join(row[key].ljust(widths[key]) for key in keys) + "  " + row["description"]
        )


@cli.command(name="eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="data set whose test/ split (or whole folder) is evaluated",
)
@click.option(
    "--attack",
    help="attack spec, e.g. badnet:pattern=grid,target=5 "
    "[default: the one stored in the checkpoint]",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    help="original model, for functionality and agreement",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="write metrics here")
@checkpoint_options
@common_options
def eval_command(
    model: Path,
    data: Path,
    attack: str | None,
    reference: Path | None,
    json_out: Path | None,
    **kwargs: Any,
) -> None:
    """Evaluate MODEL: clean accuracy, ASR and the other installed evaluators' metrics."""
    from purify_backdoor.checkpoint_evaluation import EvalRequest, evaluate_checkpoint
    from purify_backdoor.evaluation import metrics_table

    context = run_context(kwargs["seed"], kwargs["device"], kwargs["quiet"])
    request = EvalRequest(
        model_path=model,
        data=data,
        attack=attack,
        reference=reference,
        json_out=json_out,
        format=kwargs["format_"],
        arch=kwargs["arch"],
        trust_checkpoint=kwargs["trust_checkpoint"],
        override=input_override(kwargs),
        accept_low_accuracy=kwargs["accept_low_accuracy"],
        trojai_round=kwargs["trojai_round"],
    )
    metrics = evaluate_checkpoint(request, context)
    click.echo(metrics_table({model.name: metrics}))


@cli.command(name="attack", cls=PluginCommand, kind="attack")
@click.option("-p", "--plugin", required=True, help="attack to apply (see `purify plugins`)")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="clean data set to poison (train/ and test/)",
)
@click.option("--arch", default="wrn16-1", show_default=True, help="architecture to train")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="where to write the backdoored model (.pth.tar: NAD format)",
)
@click.option(
    "--poison-ratio",
    type=float,
    default=0.1,
    show_default=True,
    callback=within(between(0, 1, max_open=True), "0.1"),
    help="poisoned / total training images, in [0, 1)",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="small",
    show_default=True,
    help="small: 10k-image subset, 12 epochs, trigger stamped after augmentation (minutes on "
    "a CPU); fast: all images, 30 epochs of a fast recipe (half an hour on 2 CPU cores for "
    "WRN-16-1); paper: all, 100 epochs (GPU)",
)
@click.option(
    "--epochs", type=int, callback=within(at_least(1), "12"), help="override the profile's epochs"
)
@click.option(
    "--lr",
    type=float,
    callback=within(above(0), "0.1"),
    help="override the profile's learning rate",
)
@click.option(
    "--batch-size",
    type=int,
    callback=within(at_least(1), "128"),
    help="override the profile's batch size",
)
@click.option(
    "--n-train",
    type=int,
    callback=within(at_least(1), "10000"),
    help="override the profile's training-subset size",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    help="override the profile's label smoothing (fast: 0.1)",
)
@click.option(
    "--stamp-after-augment/--stamp-before-augment",
    default=None,
    help="put the trigger on after crop+flip (small profile) or before (paper profile)",
)
@click.option(
    "-o",
    "--option",
    "option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="set an attack option, e.g. -o target=5 (repeatable)",
)
@click.option("--resume", is_flag=True, help="continue an interrupted training from its last epoch")
@click.option("--overwrite", is_flag=True, help="replace an existing output file")
@common_options
@click.pass_context
def attack_command(
    ctx: click.Context, plugin: str, option_pairs: tuple[str, ...], **kwargs: Any
) -> None:
    """Poison a training set with an attack plugin and train a backdoored model."""
    from purify_backdoor.backdoor_training import TrainRequest, train_backdoored
    from purify_backdoor.evaluation import metrics_table

    settings = _plugin_settings(ctx, kwargs, option_pairs)
    context = run_context(kwargs["seed"], kwargs["device"], kwargs["quiet"])
    context.resume = kwargs.pop("resume")
    overrides = ("epochs", "lr", "batch_size", "n_train", "stamp_after_augment", "label_smoothing")
    schedule = PROFILES[kwargs["profile"]] | {
        key: kwargs[key] for key in overrides if kwargs[key] is not None
    }
    request = TrainRequest(
        attack=plugin,
        options=settings,
        data=kwargs["data"],
        arch=kwargs["arch"],
        out=kwargs["out"],
        poison_ratio=kwargs["poison_ratio"],
        overwrite=kwargs["overwrite"],
        **schedule,
    )
    metrics = train_backdoored(request, context)
    click.echo(metrics_table({kwargs["out"].name: metrics}))


@cli.command(name="bench")
@click.argument("grid", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="results folder (default: the grid file's name without .toml, beside it)",
)
@click.option(
    "--tables-only",
    is_flag=True,
    help="run nothing; write the result files from the cells finished so far",
)
@click.option(
    "--only",
    multiple=True,
    metavar="TEXT",
    help="run only the cells whose model/defense/seedN name contains TEXT (repeatable, e.g. "
    "--only sig/ --only /medic); the result files still cover every finished cell",
)
@executor_options
@device_options
def bench_command(
    grid: Path,
    out: Path | None,
    device: str,
    quiet: bool,
    tables_only: bool,
    only: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Run every defense of a GRID file (TOML) on every model and seed it lists; write
    results.csv, results.json, results.md and, when matplotlib is installed, PNG plots.
    Re-running skips finished cells, runs again those whose command the grid has changed or
    whose model file was replaced, and resumes started ones; seeds come from the grid. Attack
    models are trained first, then the cells run, each phase through the executor."""
    from purify_backdoor.bench.pipeline import run_bench
    from purify_backdoor.executors.job import terminate_as_interrupt

    resolve_device(device)
    executor = _executor(kwargs, device)
    context = RunContext(device=torch.device("cpu"), seed=0, quiet=quiet)
    try:
        with terminate_as_interrupt():
            result = run_bench(grid, out, device, context, executor, not tables_only, only)
    except KeyboardInterrupt:
        click.echo(
            "Interrupted; the running cells were stopped and keep their last epoch. Re-run the "
            "same command to resume: finished cells are kept.",
            err=True,
        )
        sys.exit(130)
    if not result.plotted:
        click.echo("no PNG plots: matplotlib is missing (pip install 'purify-backdoor[plot]')")
    click.echo(result.table.read_text())
    click.echo("wrote " + ", ".join(str(path) for path in result.written))
    if result.failures:
        first = result.failures[0]
        raise PurifyError(
            f"{len(result.failures)} bench job(s) failed, first {first.what}: {first.reason} "
            f"(log: {first.log}); fix it and re-run the same command"
        )


@cli.command(name="zoo", cls=PluginCommand, kind="defense")
@click.argument("zoo", type=click.Path(path_type=Path))
@click.option("-p", "--plugin", required=True, help="defense to run (see `purify plugins`)")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="output folder: <name>/ per model, and zoo.csv, zoo.json, zoo.md",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="clean data for every model (a manifest's `data` column overrides it)",
)
@click.option("--attack", help="attack spec for every model (a manifest's `attack` overrides it)")
@checkpoint_options
@defense_options
@click.option(
    "--write-unchanged",
    is_flag=True,
    help="write models the defense left unchanged too (their status says so)",
)
@click.option(
    "--no-html",
    is_flag=True,
    help="no HTML report per model (zoo.html is still written)",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="run again the models that failed on bad input (otherwise a re-run keeps their row)",
)
@executor_options
@common_options
@click.pass_context
def zoo_command(
    ctx: click.Context, zoo: Path, plugin: str, option_pairs: tuple[str, ...], **kwargs: Any
) -> None:
    """Purify every model of ZOO with one defense: ZOO is a folder (checkpoint files, TrojAI
    model folders, BackdoorBench record folders) or a manifest (.csv or .jsonl with a `path`
    column and optional `name`, `data`, `attack`, `format`, `arch`). One failing model is a row
    with its error; a re-run skips finished models and resumes started ones.

    Exit status: 0 every model ran to a result (purified, left unchanged, or broken by the
    defense: each a row with its status), 2 some failed (see zoo.md)."""
    from purify_backdoor.executors.job import terminate_as_interrupt
    from purify_backdoor.purification import PurifyRequest
    from purify_backdoor.zoo.jobs import ZooRequest
    from purify_backdoor.zoo.pipeline import run_zoo

    settings = _plugin_settings(ctx, kwargs, option_pairs)
    resolve_device(kwargs["device"])
    executor = _executor(kwargs, kwargs["device"])
    template = PurifyRequest(
        model_path=zoo,  # each model's own path, in its job
        plugin=plugin,
        options=settings,
        data=kwargs["data"],
        format=kwargs["format_"],
        arch=kwargs["arch"],
        attack=kwargs["attack"],
        ratio=kwargs["ratio"],
        n_clean=kwargs["n_clean"],
        trust_checkpoint=kwargs["trust_checkpoint"],
        save_format=kwargs["save_format"],
        write_unchanged=kwargs["write_unchanged"],
        html=not kwargs["no_html"],
        override=input_override(kwargs),  # a malformed --mean stops the zoo here, once
        accept_low_accuracy=kwargs["accept_low_accuracy"],
        trojai_round=kwargs["trojai_round"],
    )
    request = ZooRequest(
        zoo=zoo,
        out=kwargs["out"],
        template=template,
        seed=kwargs["seed"],
        device=kwargs["device"],
        retry_failed=kwargs["retry_failed"],
    )
    context = RunContext(device=torch.device("cpu"), seed=kwargs["seed"], quiet=kwargs["quiet"])
    if not kwargs["quiet"]:
        click.echo(f"zoo {zoo}: {executor.describe()}", err=True)
    try:
        with terminate_as_interrupt():
            result = run_zoo(request, executor, context)
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted; the running models were stopped and keep their last epoch. Re-run the "
            f"same command to resume (finished models are kept); partial summary in "
            f"{kwargs['out'] / 'zoo.md'}",
            err=True,
        )
        sys.exit(130)
    click.echo((kwargs["out"] / "zoo.md").read_text())
    click.echo("wrote " + ", ".join(str(path) for path in result.written))
    if result.failed:
        first = result.failed[0]
        raise PurifyError(
            f"{len(result.failed)} of {len(result.rows)} models failed, first {first['name']}: "
            f"{first['error']} (log: {kwargs['out'] / first['log']}); the others are in "
            f"{kwargs['out'] / 'zoo.md'}"
        )


@cli.command(name="report")
@click.argument("report_json", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="HTML file  [default: the report's name with .html]",
)
def report_command(report_json: Path, out: Path | None) -> None:
    """Draw the HTML page of a saved JSON report (REPORT_JSON) again."""
    from purify_backdoor.report_html import html_path_for, read_report, write_report_html

    report = read_report(report_json)
    target = out or html_path_for(report_json)
    if target.resolve() == report_json.resolve():
        raise PurifyError(f"--out {target} is the JSON report itself; choose another path")
    write_report_html(report, target)
    click.echo(f"html report: {target}")


def _reserve_host_flags() -> None:
    """Tell the manager which option names the commands' own flags take, once every command is
    defined (the manager never imports the CLI)."""
    kinds = {c.kind for c in cli.commands.values() if isinstance(c, PluginCommand)}
    for kind in kinds:
        reserve_option_names(kind, host_option_names(kind))


_reserve_host_flags()
