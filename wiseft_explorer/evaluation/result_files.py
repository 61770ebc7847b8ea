"""A sweep's results as files that travel: the JSONL and its per-image file, written on one machine (a cluster's
rank 0) and imported into the disk cache of another, where the app shows them without loading a model.

The cache's keys include where each set's folder is and its files' modification times (cheap to check, but true
of one machine only), so an import does not copy entries: it checks what cannot differ (the models' content
digests, the prompts, and each set's files by relative path, size and label) and stores the results under this
machine's keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..core.distributed import provenance_line
from ..results.curves import ALPHA_GRID, store_curves
from ..results.robustness import experiment_robustness, robustness_rows
from ..store.atomic import atomic_path
from ..store.cache import DiskCache
from ..store.keys import fingerprint_difference
from .runtime import ExperimentRuntime
from .sweep import cached_sweep, entry_key
from .sweep_result import Predictions, SweepResult, entry_predictions, entry_tensors

FORMAT = "wiseft-sweep-per-image/1"
SUFFIX = ".per-image.safetensors"


class ResultsError(ValueError):
    """Results that cannot be imported here: missing files, another experiment, other sets."""


def per_image_path(jsonl: str | Path) -> Path:
    """The per-image file that goes with a sweep JSONL: results.jsonl -> results.per-image.safetensors."""
    jsonl = Path(jsonl)
    return jsonl.with_name(jsonl.stem + SUFFIX)


def set_identity(runtime: ExperimentRuntime, name: str) -> str:
    """A set's identity on any machine: its files by path relative to the set's folder and size, and its labels."""
    ev, spec = runtime.eval_set(name), runtime.spec(name)
    h = hashlib.sha256(f"{len(ev)}|{runtime.experiment.seed}|{spec.limit}|{spec.classes}\n".encode())
    if ev.paths is None:  # a set of the built-in world: its name and size say which images it holds
        h.update(spec.source.encode())
    else:
        root = Path(spec.source)
        for path in ev.paths:
            file = Path(path)
            relative = file.relative_to(root) if file.is_relative_to(root) else Path(file.name)
            h.update(f"{relative.as_posix()}:{file.stat().st_size}\n".encode())
    h.update(ev.labels.numpy().tobytes())
    return h.hexdigest()


def write_results(runtime: ExperimentRuntime, result: SweepResult, jsonl: str | Path) -> tuple[Path, Path]:
    """The JSONL (the paper code's rows) and, next to it, every set's per-image predictions; both atomic."""
    robustness = experiment_robustness(runtime.experiment, result)  # testbed lines: ImageNet presets only
    jsonl = result.write_jsonl(jsonl, None if robustness is None else robustness_rows(robustness))
    tensors: dict[str, torch.Tensor] = {}
    sets = []
    for i, (name, by_alpha) in enumerate(result.predictions.items()):
        first = next(iter(by_alpha.values()))
        labels = runtime.eval_set(name).labels[first.index]
        tensors.update({f"{i}.{k}": v for k, v in entry_tensors(by_alpha, labels, result.ensemble_predictions.get(name)).items()})
        sets.append({"name": name, "total": first.total, "top1": [by_alpha[a].top1 for a in sorted(by_alpha)],
                     "identity": set_identity(runtime, name), "metric": result.metric(name),
                     "score": [result.top1s[name][a] for a in sorted(by_alpha)]})
    meta = {"format": FORMAT, "experiment": runtime.experiment.name, "alphas": json.dumps(sorted(result.alphas)),
            "fingerprint": json.dumps(runtime.fingerprint, sort_keys=True), "sets": json.dumps(sets),
            "provenance": json.dumps(result.provenance),
            "about": json.dumps(runtime.describe() if runtime.models_loaded else {})}
    path = per_image_path(jsonl)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return jsonl, path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118 - safe_open is not iterable
    except FileNotFoundError:  # the message names the missing file; safetensors' frames add nothing
        raise ResultsError(f"{path}: the per-image file is missing; `sweep --out RESULTS.jsonl` writes it next to "
                           "the JSONL, copy both") from None
    except Exception as err:  # safetensors reports damaged files with several exception types
        raise ResultsError(f"{path}: not a readable per-image file ({err})") from err


def _check_models(runtime: ExperimentRuntime, theirs: dict[str, str]) -> None:
    ours = runtime.fingerprint
    differ = [k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    if differ:
        raise ResultsError(f"these results were computed with other models or prompts than "
                           f"{runtime.experiment.name!r}: " +
                           "; ".join(fingerprint_difference(k, theirs.get(k), ours.get(k)) for k in differ))


def _check_jsonl(jsonl: Path, sets: list[dict], alphas: list[float]) -> None:
    """The JSONL's headline numbers must be those of the per-image file (both from the same sweep)."""
    try:
        rows = {float(r["alpha"]): r for r in map(json.loads, jsonl.read_text().splitlines()) if r}
    except (OSError, ValueError, KeyError) as err:
        raise ResultsError(f"{jsonl}: not a sweep JSONL ({err})") from err
    for entry in sets:
        key = f"{entry['name']}:{entry.get('metric', 'top1')}"  # the number the JSONL shows, in the set's metric
        for alpha, score in zip(alphas, entry.get("score", entry["top1"]), strict=True):
            if rows.get(alpha, {}).get(key) != score:
                raise ResultsError(f"{jsonl} and {per_image_path(jsonl).name} come from different sweeps "
                                   f"({entry['name']} at alpha {alpha:g})")


def import_results(runtime: ExperimentRuntime, jsonl: str | Path, cache: DiskCache | None = None) -> SweepResult:
    """Check a sweep's files against this experiment and store them in the cache (no model is loaded)."""
    jsonl = Path(jsonl).expanduser()
    if not jsonl.is_file():
        raise ResultsError(f"{jsonl}: no such results file (a sweep JSONL written by `sweep --out`)")
    tensors, meta = _read(per_image_path(jsonl))
    if meta.get("format") != FORMAT:
        raise ResultsError(f"{per_image_path(jsonl)}: not a per-image file of this program ({meta.get('format')})")
    alphas, sets = json.loads(meta["alphas"]), json.loads(meta["sets"])
    if alphas != sorted(ALPHA_GRID):
        raise ResultsError(f"{jsonl}: the app shows full sweeps of the 21-alpha grid; this one has alphas {alphas} "
                           "(run `sweep` without --alpha)")
    _check_models(runtime, json.loads(meta["fingerprint"]))
    if [s["name"] for s in sets] != runtime.set_names:
        raise ResultsError(f"{jsonl}: its sets are {[s['name'] for s in sets]}, the experiment's "
                           f"{runtime.set_names}")
    for entry in sets:
        if entry["identity"] != set_identity(runtime, entry["name"]):
            raise ResultsError(f"set {entry['name']!r}: the images here are not those the results were computed "
                               f"on ({len(runtime.eval_set(entry['name']))} here, {entry['total']} there, or other "
                               "files, sizes or labels)")
    _check_jsonl(jsonl, sets, alphas)
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    origins = [{**p, "imported": str(jsonl)} for p in json.loads(meta["provenance"])]
    for i, entry in enumerate(sets):
        cache.put(entry_key(runtime, entry["name"], alphas, None), _part(tensors, i),
                  {"top1": entry["top1"], "total": entry["total"], "set": entry["name"], "alphas": alphas,
                   "provenance": origins[0] if origins else {"imported": str(jsonl)}})
    result = cached_sweep(runtime, ALPHA_GRID, cache)
    if result is None:
        raise ResultsError(f"{jsonl}: imported, but the cache at {cache.root} did not keep it")
    curves = result.curves()
    curves.about = {**json.loads(meta["about"]),
                    "results": "; ".join(provenance_line(p) for p in result.provenance)}
    store_curves(runtime.experiment, curves)
    return result


def sweep_predictions(path: str | Path) -> dict[str, dict[float, Predictions]]:
    """The per-image predictions a per-image file holds, by set and alpha (for comparisons and tests)."""
    tensors, meta = _read(Path(path))
    alphas, out = json.loads(meta["alphas"]), {}
    for i, entry in enumerate(json.loads(meta["sets"])):
        out[entry["name"]], _ = entry_predictions(_part(tensors, i), entry["top1"], entry["total"], alphas)
    return out


def _part(tensors: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Set number i's tensors of a per-image file, named as in a cache entry (entry_tensors)."""
    return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == str(i)}
