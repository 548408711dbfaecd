"""The ``mmtrain`` command line: run, eval, grid, compare, report (and models).

Torch is imported only by the commands that train or evaluate, and only after their config resolved: ``--help``,
``models``, ``compare``, ``report`` and every config error (unknown model or key, bad value, bad ``--set``,
missing recipe) answer without it (tests/mmtrain/test_cli_fast.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from mmformat.cli import UserErrorGroup
from mmformat.progress import setup_logging
from mmtrain import __version__
from mmtrain.config import find_recipe, make_config, parse_grid, parse_set, read_recipe
from mmtrain.errors import TrainError

log = logging.getLogger(__name__)


class TrainGroup(UserErrorGroup):
    """User errors become one line on stderr and exit code 2, never a traceback (as ``mmprep``)."""

    prog = "mmtrain"


@click.group(cls=TrainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmtrain")
@click.option("-v", "--verbose", count=True, help="Debug log output on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr (no progress bar).")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Train and evaluate recommenders on datasets written by mmprep (docs/FORMAT.md).

    \b
    Examples:
      mmtrain run --model lightgcn --dataset out/baby --out runs/
      mmtrain grid --model mf --dataset out/baby --grid reg_weight=1e-5,1e-4 --seeds 1,2
      mmtrain compare runs/ --format md
      mmtrain eval runs/lightgcn-baby-warm-s999-20250101-120000/best.pt
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    setup_logging(level, "%(asctime)s %(name)s: %(message)s")
    ctx.obj = {"progress": not quiet}


def _common_options(f=None, *, required: bool = True):
    """Options shared by ``run`` and ``grid`` (``run`` checks --model/--dataset itself: ``required=False``)."""
    if f is None:
        return lambda g: _common_options(g, required=required)
    options = [
        click.option(
            "--model", "model", required=required, help="Registered model name (see `mmtrain models`)."
        ),
        click.option(
            "--dataset",
            required=required,
            type=click.Path(path_type=Path),
            help="Dataset directory written by mmprep.",
        ),
        click.option(
            "--config",
            "recipe",
            type=click.Path(path_type=Path),
            default=None,
            help="Model recipe YAML or a run's config.yaml (default: recipes/models/<model>.yaml when it exists).",
        ),
        click.option(
            "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeat)."
        ),
        click.option("--split", type=click.Choice(["warm", "cold"]), default=None, help="Split set [warm]."),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N [auto]."),
        click.option(
            "--legacy-ndcg",
            type=click.Choice(["none", "lattice"]),
            default=None,
            help="Also report the LATTICE-family NDCG (ndcg_lattice@K).",
        ),
        click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _overrides(sets: tuple[str, ...], **options: Any) -> list[tuple[str, Any]]:
    """``--set`` pairs, then the dedicated options that were given (they win)."""
    pairs = [parse_set(s) for s in sets]
    return pairs + [(k, v) for k, v in options.items() if v is not None]


@main.command()
@_common_options(required=False)
@click.option("--seed", type=int, default=None, help="Random seed [999].")
@click.option("--name", default=None, help="Run directory name (default: model-dataset-split-seed-time).")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="RUN_DIR",
    help="Continue a killed run in RUN_DIR after its last finished epoch (--dataset only if the data moved).",
)
@click.option(
    "--nproc",
    type=int,
    default=None,
    metavar="N",
    help="Train data-parallel on N local processes (docs/distributed.md); torchrun starts them instead "
    "with `torchrun --nproc-per-node N -m mmtrain run ...`.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "gloo", "nccl"]),
    default="auto",
    show_default=True,
    help="Process-group backend of a distributed run (auto: NCCL on CUDA, gloo on CPU).",
)
@click.pass_context
def run(
    ctx: click.Context,
    model: str | None,
    dataset: Path | None,
    recipe: Path | None,
    sets: tuple[str, ...],
    split: str | None,
    device: str | None,
    legacy_ndcg: str | None,
    out: Path,
    seed: int | None,
    name: str | None,
    resume_dir: Path | None,
    nproc: int | None,
    backend: str,
) -> None:
    """Train one model, select the epoch on validation, evaluate test once; write a run directory.

    Config resolution: built-in defaults < recipe YAML < --set < the dedicated options (--split, --device,
    --seed, --legacy-ndcg). --config also takes a run's own config.yaml (then --model may be left out): any
    run directory is re-run as it is. The run directory holds config.yaml, versions.json, metrics.csv,
    tensorboard/, best.pt, final.json and curve.png; while training, last.pt holds the state after the last
    epoch, and --resume RUN_DIR continues a killed run from it (on CPU with the same numbers as a run never
    stopped). The final metrics JSON is also printed on stdout.

    \b
    Examples:
      mmtrain run --model lightgcn --dataset out/baby
      mmtrain run --model mf --dataset out/baby --set lr=5e-4 --set reg_weight=1e-4 --seed 1
      mmtrain run --model vbpr --dataset out/tiktok --device cuda --legacy-ndcg lattice
      mmtrain run --model lightgcn --dataset out/baby --split cold --set cold_candidates=cold
      mmtrain run --model micro --dataset out/tiktok --set max_minutes=60   # stop after an hour of training
      mmtrain run --model lattice --dataset out/tiktok --set sampler=users --set neg_items=all  # LATTICE batches
      mmtrain run --config runs/mf-baby-warm-s999-20250101-120000/config.yaml --dataset out/baby
      mmtrain run --resume runs/mf-baby-warm-s999-20250101-120000
      mmtrain run --model lightgcn --dataset out/tiktok --nproc 2 --set threads=1   # 2 processes (gloo)
      torchrun --nproc-per-node 8 -m mmtrain run --model freedom --dataset out/baby --device cuda
    """
    from mmformat.progress import echo

    world = _torchrun_world_size()
    if nproc is not None and nproc < 1:
        raise TrainError(f"--nproc {nproc}: give at least 1 process")
    if nproc is not None and world > 1:
        raise TrainError(f"--nproc under torchrun: torchrun already started {world} processes; drop --nproc")
    job: dict[str, Any] = {"progress": ctx.obj["progress"], "backend": backend, "dataset": dataset}
    if resume_dir is not None:
        given = [
            param.opts[0]
            for param in ctx.command.params
            if param.name not in ("resume_dir", "dataset", "nproc", "backend")
            and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise TrainError(f"--resume continues a run with its own config; drop {', '.join(given)}")
        job["resume_dir"] = resume_dir
    else:
        if model is None and recipe is not None:
            model = read_recipe(recipe).get("model")
        if model is None or dataset is None:
            raise TrainError(
                "run needs --model (or a --config naming one) and --dataset, or --resume RUN_DIR"
            )
        pairs = _overrides(sets, split=split, device=device, seed=seed, legacy_ndcg=legacy_ndcg)
        job.update(config=make_config(model, recipe, pairs), out=out, name=name)
    result = _execute(job, nproc or 1, world)  # torch: only once the config is valid
    if result is None:  # a rank other than 0 of a torchrun job: rank 0 prints
        return
    if result.already_finished:
        echo(f"{resume_dir}: the run already finished (final.json); nothing to resume")
    click.echo(json.dumps(result.final, indent=2, sort_keys=True))


def _torchrun_world_size() -> int:
    """``WORLD_SIZE`` when torchrun started this process, else 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise TrainError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def _execute(job: dict[str, Any], nproc: int, world: int) -> Any:
    """Run ``job`` in this process, on ``nproc`` spawned processes, or as this torchrun rank; returns the
    result on rank 0 (None on the other torchrun ranks)."""
    from mmtrain import distributed
    from mmtrain.data.loader import resolve_device
    from mmtrain.experiment import execute

    if nproc > 1:
        if "config" in job:  # the errors every rank would hit, once and before any process starts
            distributed.check_supported(job["config"], nproc)
            distributed.check_backend(job["backend"], resolve_device(job["config"]["device"]).type)
        from mmtrain.launch import launch

        return launch(nproc, job, logging.getLogger().getEffectiveLevel())
    if world <= 1:
        return execute(job)
    dist = distributed.from_env(job["backend"])
    try:
        result = execute(job, dist)
    finally:
        distributed.shutdown()
    return result if dist.is_main else None


@main.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset directory (default: the one the checkpoint was trained on).",
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the run's).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change an evaluation key (topk, mask_val_at_test, ...).",
)
@click.option(
    "--legacy-ndcg",
    type=click.Choice(["none", "lattice"]),
    default=None,
    help="Also report the LATTICE-family NDCG (ndcg_lattice@K).",
)
def eval_cmd(
    checkpoint: Path, dataset: Path | None, device: str | None, sets: tuple[str, ...], legacy_ndcg: str | None
) -> None:
    """Evaluate a saved best.pt on the val and test splits; prints JSON on stdout.

    Evaluation keys of the run's config can be changed with --set: topk, eval_batch_size, mask_val_at_test,
    legacy_ndcg, cold_candidates, threads.

    \b
    Examples:
      mmtrain eval runs/lightgcn-baby-warm-s999-20250101-120000/best.pt
      mmtrain eval runs/mf-baby/best.pt --dataset /data/baby-copy --device cpu
      mmtrain eval runs/mf-baby/best.pt --set mask_val_at_test=false --legacy-ndcg lattice
    """
    from mmtrain.experiment import evaluate_checkpoint

    pairs = _overrides(sets, legacy_ndcg=legacy_ndcg)
    click.echo(json.dumps(evaluate_checkpoint(checkpoint, dataset, device, pairs), indent=2, sort_keys=True))


@main.command()
@_common_options
@click.option(
    "--grid", "grid_items", multiple=True, metavar="KEY=V1,V2", help="Values to search (repeat per key)."
)
@click.option(
    "--seeds", default="999", show_default=True, help="Comma-separated seeds; each point runs each."
)
@click.pass_context
def grid(
    ctx: click.Context,
    model: str,
    dataset: Path,
    recipe: Path | None,
    sets: tuple[str, ...],
    split: str | None,
    device: str | None,
    legacy_ndcg: str | None,
    out: Path,
    grid_items: tuple[str, ...],
    seeds: str,
) -> None:
    """Grid search: one run per (grid point, seed), selection on validation only.

    Without --grid the recipe's `grid:` section is searched. Every run is a run directory under
    OUT/grid-MODEL-DATASET-TIME/, with results.csv (one row per run) and selection.json: the point with the
    best mean validation metric over the seeds and its mean test metrics (test never drives the choice).

    \b
    Examples:
      mmtrain grid --model lightgcn --dataset out/baby --grid ui_layers=1,2,3 --grid reg_weight=1e-4,1e-3
      mmtrain grid --model mf --dataset out/baby --grid lr=1e-3,5e-4 --seeds 1,2 --set epochs=200
    """
    base = _overrides(sets, split=split, device=device, legacy_ndcg=legacy_ndcg)
    make_config(model, recipe, base)  # model, recipe and --set errors first, before torch loads
    grid_values = parse_grid(grid_items) if grid_items else _recipe_grid(model, recipe)
    from mmtrain.runs import format_table
    from mmtrain.search import run_grid

    result = run_grid(
        model, dataset, grid_values, _parse_seeds(seeds), base, recipe, out, progress=ctx.obj["progress"]
    )
    click.echo(format_table(result.rows, "md"))
    click.echo(json.dumps(result.selection, indent=2, sort_keys=True))


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise TrainError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds:
        raise TrainError("--seeds: give at least one seed")
    return seeds


def _recipe_grid(model: str, recipe: Path | None) -> dict[str, list[Any]]:
    path = recipe or find_recipe(model)
    values = (read_recipe(path).get("grid") or {}) if path else {}
    if not values:
        raise TrainError(f"no --grid given and the recipe of {model} has no grid: section")
    return {k: v if isinstance(v, list) else [v] for k, v in values.items()}


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option(
    "--metric", "metrics", multiple=True, help="Test metric columns (default Recall/NDCG@10,20,50)."
)
@click.option("--per-run", is_flag=True, help="One row per run instead of per (model, grid point).")
def compare(run_dirs: tuple[Path, ...], fmt: str, metrics: tuple[str, ...], per_run: bool) -> None:
    """Table of finished runs (a directory that is not a run contributes every run below it).

    Runs are grouped by (model, dataset, split, hyperparameters that vary between the runs of a model):
    one row per grid point with mean ± std over its seeds (CSV: <column> and <column>_std), the
    hyperparameter columns kept. --per-run lists every run instead.

    \b
    Examples:
      mmtrain compare runs/lightgcn-baby-* runs/mf-baby-*
      mmtrain compare runs/grid-mf-baby-20250101-120000 --format csv --metric recall@20 --metric map@20
      mmtrain compare runs/ --per-run
    """
    from mmtrain.runs import compare_rows, format_table, merge_std

    rows = compare_rows(run_dirs, list(metrics) or None, per_run=per_run)
    click.echo(format_table(merge_std(rows) if fmt == "md" and not per_run else rows, fmt), nl=False)


@main.command()
@click.option("--params", is_flag=True, help="Also list each model's hyperparameters (defaults) and recipe.")
def models(params: bool) -> None:
    """List the registered models, one line each (name and summary).

    \b
    Examples:
      mmtrain models
      mmtrain models --params
    """
    from mmtrain.models.registry import available, get_spec

    names = available()
    width = max(map(len, names))
    for name in names:
        spec = get_spec(name)
        click.echo(f"{name:<{width}}  {spec.summary}")
        if params:
            recipe = find_recipe(name)
            click.echo(f"{'':<{width}}  {', '.join(f'{k}={v}' for k, v in spec.defaults.items())}")
            click.echo(f"{'':<{width}}  recipe: {recipe or 'none'}")


@main.command()
@click.argument("suite_dir", type=click.Path(path_type=Path))
@click.option(
    "--baseline", default=None, help="Model the others are tested against [the suite's, else lightgcn]."
)
@click.option("--metric", default=None, help="Tested and charted metric [the suite's selection metric].")
def report(suite_dir: Path, baseline: str | None, metric: str | None) -> None:
    """Leaderboard of a suite directory: leaderboard.md, leaderboard.json and report.html in SUITE_DIR.

    Per model and selected grid point: mean ± std over seeds of every val and test metric, s/epoch, epochs to
    best, peak memory, the published number and our relative difference, and a Wilcoxon signed-rank test of
    the per-user test metric (averaged over seeds) against the baseline, Holm-corrected across models
    (docs/leaderboard.md). Prints leaderboard.md.

    \b
    Examples:
      mmtrain report suites/tiktok
      mmtrain report suites/tiktok --baseline mf --metric ndcg@20
    """
    from mmtrain.report import LEADERBOARD_MD, write_report

    write_report(suite_dir, baseline=baseline, metric=metric)
    click.echo((suite_dir / LEADERBOARD_MD).read_text(encoding="utf-8"), nl=False)


@main.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Suite directory [suites/<name>].")
@click.option("--dry-run", is_flag=True, help="List the trials and their status (done/todo/running/failed).")
@click.option(
    "--tables-only",
    is_flag=True,
    help="Run nothing: write trials.csv, selection.json and the report from the trials finished so far "
    "(safe while a driver runs the rest).",
)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip finished trials.")
@click.option("--executor", type=click.Choice(["auto", "serial", "ray"]), default="auto", show_default=True)
@click.option("--address", default=None, help="Ray cluster to join: auto or HOST:PORT [a local Ray].")
@click.option("--cpus-per-trial", type=float, default=1, show_default=True, help="Ray CPUs per trial.")
@click.option(
    "--gpus-per-trial",
    type=float,
    default=0,
    show_default=True,
    help="Ray GPUs per trial (0.5: two share one).",
)
@click.pass_context
def suite(
    ctx: click.Context,
    suite_file: Path,
    out: Path | None,
    dry_run: bool,
    tables_only: bool,
    resume: bool,
    executor: str,
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
) -> None:
    """Run a whole study: datasets x models x grid points x seeds from a suite YAML (recipes/suites/).

    Each trial is a run directory SUITE_DIR/trials/<hash of its resolved config>/; rerunning skips the
    finished ones and continues interrupted ones from their last.pt (others start afresh). At the end:
    trials.csv, selection.json (per model the grid point with the best mean validation metric over seeds) and
    the report; --tables-only writes them from the trials finished so far. Exit code 2 when a trial failed
    (the others still run). Ray runs trials in parallel when installed (pip install modalrec[ray]).

    \b
    Examples:
      mmtrain suite recipes/suites/tiktok.yaml --dry-run
      mmtrain suite recipes/suites/tiktok.yaml --out suites/tiktok --executor serial
      mmtrain suite recipes/suites/tiktok.yaml --out suites/tiktok --tables-only
      mmtrain suite recipes/suites/tiktok.yaml --address auto --cpus-per-trial 4 --gpus-per-trial 0.5
    """
    from mmtrain.suite import run_suite

    path = run_suite(
        suite_file,
        out,
        resume=resume,
        dry_run=dry_run,
        tables_only=tables_only,
        executor=executor,
        address=address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        progress=ctx.obj["progress"],
    )
    if not dry_run:
        click.echo(path)


# commands whose process is one training or ranking job: it keeps the memory it frees (mmformat.allocator)
_KEEPS_FREED_MEMORY = ("run", "grid", "eval", "suite")


def console(argv: list[str] | None = None) -> None:
    """The console script (and ``python -m mmtrain``): :func:`main`, with the process's allocator set to keep
    freed memory first when the command trains or ranks (each step's large tensors are then reused in place
    instead of being mapped, faulted in and zeroed again: BENCHMARKS.md)."""
    from mmformat.allocator import keep_freed_memory_for

    args = sys.argv[1:] if argv is None else argv
    keep_freed_memory_for(args, _KEEPS_FREED_MEMORY)
    main(args=args, prog_name="mmtrain")


if __name__ == "__main__":
    console()
