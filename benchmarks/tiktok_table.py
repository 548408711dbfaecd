"""Turn a finished TikTok suite into ``benchmarks/results/tiktok-table.json`` (schema in BENCHMARKS.md).

    mmtrain suite recipes/suites/tiktok.yaml --out suites/tiktok
    python benchmarks/tiktok_table.py suites/tiktok [--out benchmarks/results/tiktok-table.json]
    python benchmarks/tiktok_table.py suites/tiktok-cold --out benchmarks/results/tiktok-cold-table.json

Per model: test Recall@20 and NDCG@20 of the val-selected grid point over its seeds, the published number from
the suite spec, the selected hyperparameters, s/epoch, each seed's best epoch and stop reason, and the parity
verdict from ``benchmarks/results/parity/<model>.json`` ("not run: no parity result" when there is none); on the
cold split also the test metrics under the other candidate set (``test_cold_candidates``: ranked among the
test-cold items only).
``converged`` is true only when every seed was stopped by early stopping (patience) or ran the whole fixed schedule
of a recipe that has one (patience >= epochs, e.g. MDMNS's 50 epochs, as its original trains): a seed cut by the
time budget or by the epoch cap of an early-stopped recipe may still have been improving, so a cost-bounded suite
cannot pass for a converged table.

The suite may still be running: the table is then built from the trials finished so far (run ``mmtrain suite
SPEC --out DIR --tables-only`` first to refresh ``selection.json``); ``complete`` says whether every model of the
suite has all its seeds, ``missing`` names the models with none finished, and each model's ``complete`` whether
all seeds of its selected grid point have finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info

PARITY = RESULTS / "parity"


def _stats(values: list[float]) -> dict[str, Any]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "seeds": values}


def parity_verdict(model: str, folder: Path | None = None) -> str:
    """The parity verdict recorded for ``model`` (in ``folder``, default the parity results), or why there is none."""
    path = (folder or PARITY) / f"{model}.json"
    if not path.exists():
        return "not run: no parity result"
    return json.loads(path.read_text())["verdict"]


def _config(trial_folder: Path) -> dict[str, Any]:
    """A finished trial's resolved config (``config.yaml``); empty when the folder has none."""
    path = trial_folder / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _ran_to_convergence(stop: str | None, config: dict[str, Any]) -> bool:
    """Stopped by patience, or ran all epochs of a recipe whose patience covers them (a fixed schedule)."""
    if stop == "patience":
        return True
    epochs, patience = config.get("epochs"), config.get("patience")
    return stop == "epochs" and epochs is not None and patience is not None and patience >= epochs


def model_entry(suite_dir: Path, name: str, chosen: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The table entry of one model from its selected trials' ``final.json``."""
    finals = [json.loads((suite_dir / "trials" / t / "final.json").read_text()) for t in chosen["trial_ids"]]
    model_spec = (spec.get("models") or {}).get(name) or {}
    published = model_spec.get("published") or {}
    stops = [f.get("stop_reason") for f in finals]
    configs = [_config(suite_dir / "trials" / t) for t in chosen["trial_ids"]]
    entry = {
        "recall@20": _stats([f["test"]["recall@20"] for f in finals]),
        "ndcg@20": _stats([f["test"]["ndcg@20"] for f in finals]),
        "published_recall@20": published.get("recall@20"),
        "published_source": published.get("source"),
        "selected": {**(model_spec.get("set") or {}), **chosen.get("point", {})},
        "seeds": [f["seed"] for f in finals],
        "s_per_epoch": statistics.mean(f["seconds_per_epoch"] for f in finals),
        "best_epoch": [f["best_epoch"] for f in finals],
        "epochs_run": [f["epochs_run"] for f in finals],
        "stop_reason": stops,
        "converged": all(_ran_to_convergence(s, c) for s, c in zip(stops, configs, strict=True)),
        "complete": bool(chosen.get("complete", True)),
        "parity": parity_verdict(name),
    }
    for key in ("test_cold_candidates", "test_all_candidates"):  # cold split: the other candidate set
        if all(key in f for f in finals):
            entry[key] = {m: _stats([f[key][m] for f in finals]) for m in ("recall@20", "ndcg@20")}
    return entry


def build_table(suite_dir: Path) -> dict[str, Any]:
    """The whole table from ``suite_dir`` (its ``suite.yaml`` and ``selection.json``)."""
    spec = yaml.safe_load((suite_dir / "suite.yaml").read_text())
    selection = json.loads((suite_dir / "selection.json").read_text())
    models = {
        name: model_entry(suite_dir, name, chosen, spec)
        for name, chosen in sorted(selection["models"].items())
        if chosen.get("trial_ids")
    }
    protocol = {
        **(spec.get("protocol") or {}),
        "selection_metric": selection.get("metric", "recall@20"),
        "budget": spec.get("budget"),
        "set": spec.get("set"),
        "suite": spec.get("name"),
        "full_ranking": True,
    }
    wanted = list((spec.get("models") or {}).keys())
    seeds = spec.get("seeds") or []
    missing = [m for m in wanted if m not in models]
    complete = not missing and all(e["complete"] and len(e["seeds"]) == len(seeds) for e in models.values())
    return {
        "dataset": "tiktok",
        "protocol": protocol,
        "complete": complete,
        "missing": missing,
        "models": models,
        "machine": machine_info(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "suite_dir", type=Path, help="an `mmtrain suite` output directory (finished or still running)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "tiktok-table.json")
    args = parser.parse_args()
    table = build_table(args.suite_dir)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2) + "\n")
    tmp.replace(args.out)
    width = max(len(m) for m in table["models"]) if table["models"] else 5
    short = [m for m, e in table["models"].items() if not e["complete"]]
    state = (
        "complete"
        if table["complete"]
        else f"partial: nothing finished for {table['missing']}, seeds missing for {short}"
    )
    print(f"TikTok table ({state})")
    print(f"{'model':<{width}}  R@20 mean ± std   seeds  published  converged  parity")
    for name, entry in table["models"].items():
        r = entry["recall@20"]
        pub = entry["published_recall@20"]
        pub_text = f"{pub:.4f}" if pub is not None else "—"
        print(
            f"{name:<{width}}  {r['mean']:.4f} ± {r['std']:.4f}  {len(entry['seeds']):>5}  {pub_text:>9}  "
            f"{entry['converged']!s:>9}  {entry['parity']}"
        )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
