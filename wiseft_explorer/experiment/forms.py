"""The Models page's form as plain data: fields <-> an experiment TOML table, without Streamlit.

Field names are the widget keys of the page (so a loaded experiment can be put straight into the widgets). Sets are
`id`, `val` and `s0`, `s1`, ...: each has a dataset preset (`_preset`, "" = a plain folder), a folder (`_source`), a
mapping file, a `limit` (0 = every image) and, for shifts, a name and a class subset (names separated by commas or
new lines). Class names and templates may be the name of a built-in list ("imagenet", "openai", ...).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .labelsets import CLASS_LISTS, TEMPLATE_SETS, list_name
from .parse import parse_experiment
from .preprocessing import preprocess_table
from .presets import PRESETS
from .spec import DatasetSpec, Experiment

Form = dict[str, Any]

# What the Models page's two weight fields accept, by library: (library, zeroshot.pretrained, finetuned.checkpoint).
WEIGHT_SOURCES = (
    ("open_clip", "a pretrained tag (laion2b_s34b_b79k), a .safetensors file, hf-hub:org/repo or local-dir:FOLDER",
     "a .safetensors file: ours, an open_clip state dict, or a converted paper checkpoint"),
    ("Hugging Face transformers", "transformers:FOLDER, a CLIPModel's save_pretrained folder (model: any name, or "
     "the open_clip model it is)", "transformers:FOLDER, a CLIPModel or CLIPVisionModelWithProjection folder"),
    ("timm", "none: the zero-shot model is open_clip's weights that timm's tag names (openai, laion2b_...); for "
     "timm's GELU *_ft_in1k towers, OpenAI's weights as a file under the GELU model (ViT-B-32)",
     "timm:FOLDER, a vit_*_clip_* folder (config.json, model.safetensors): CLIP's projection as its head, or an "
     "ImageNet classifier head (*_ft_in1k), then scored on timm's un-projected token at every α"),
)


def weight_help(field: str) -> str:
    """The help of the form's `pretrained` or `finetuned` field: what each library's weights are written as."""
    column = 1 if field == "pretrained" else 2
    return "  \n".join(f"{source[0]}: {source[column]}" for source in WEIGHT_SOURCES)


def _lines(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,]", text or "") if part.strip()]


def slug(name: str) -> str:
    """A safe file stem for an experiment name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "experiment"


def _set_table(form: Form, prefix: str, name: str) -> dict | None:
    """One set's table; without a name typed, a preset set is called by its preset's title (e.g. "ImageNet-R")."""
    source = str(form.get(f"{prefix}_source", "")).strip()
    if not source:
        return None
    preset = form.get(f"{prefix}_preset") or None
    table: dict[str, Any] = {"name": name} if name or not preset else {}
    table["source"] = source
    if preset:
        table["preset"] = preset
    if str(form.get(f"{prefix}_mapping", "")).strip():
        table["mapping"] = str(form[f"{prefix}_mapping"]).strip()
    if int(form.get(f"{prefix}_limit") or 0) > 0:
        table["limit"] = int(form[f"{prefix}_limit"])
    if _lines(form.get(f"{prefix}_classes", "")):
        table["classes"] = _lines(form[f"{prefix}_classes"])
    table.update(form.get("kept", {}).get("sets", {}).get(prefix, {}))
    return table


def _classes_table(form: Form, id_preset: str | None) -> dict | None:
    """[classes] from the two text areas; None (the ID preset's lists) when both are left empty under a preset."""
    names = [c.strip() for c in str(form.get("classes", "")).splitlines() if c.strip()]
    templates = [t.strip() for t in str(form.get("templates", "")).splitlines() if t.strip()]
    if not names and id_preset:
        return None
    table: dict[str, Any] = {"names": names[0] if len(names) == 1 and names[0] in CLASS_LISTS else names}
    if templates:
        table["templates"] = templates[0] if len(templates) == 1 and templates[0] in TEMPLATE_SETS else templates
    return table


def experiment_table(form: Form) -> dict:
    """The form's fields -> an experiment TOML table (what parse_experiment validates)."""
    data: dict = {
        "name": str(form.get("name", "")).strip() or "my experiment",
        "device": form.get("device", "auto"), "head_policy": form.get("head_policy", "auto"),
        "zeroshot": {"model": str(form.get("model", "")).strip()},
        "id": _set_table(form, "id", form.get("id_name") or ("" if form.get("id_preset") else "ID")) or {"name": "ID", "source": ""},
    }
    if (classes := _classes_table(form, data["id"].get("preset"))) is not None:
        data["classes"] = classes
    if str(form.get("finetuned", "")).strip():
        first = {"checkpoint": str(form["finetuned"]).strip()}
        extra = form.get("more_endpoints") or []  # endpoints after the first, kept from an opened file
        if extra:
            data["finetuned"] = [{"name": form.get("endpoint_name") or "fine-tuned", **first},
                                 *({"name": n, "checkpoint": c} for n, c in extra)]
        else:
            data["finetuned"] = first
    for key in ("pretrained", "config"):
        if str(form.get(key, "")).strip():
            data["zeroshot"][key] = str(form[key]).strip()
    if val := _set_table(form, "val", form.get("val_name") or "ID-val"):
        data["id_val"] = val
    shifts = [_set_table(form, f"s{i}", str(form.get(f"s{i}_name", "")).strip()
                         or ("" if form.get(f"s{i}_preset") else f"shift-{i}")) for i in range(int(form.get("nshifts", 0)))]
    data["shifts"] = [s for s in shifts if s]
    kept = form.get("kept", {})
    data.update(kept.get("top", {}))
    if kept.get("preprocess"):
        data["zeroshot"]["preprocess"] = dict(kept["preprocess"])
    return data


def form_experiment(form: Form, base: Path) -> Experiment:
    """The form validated as an experiment (relative paths start at `base`); raises ExperimentError with the fix."""
    return parse_experiment(experiment_table(form), base)


def relative_paths_note(start: Path) -> str:
    """Where the form's relative paths start (typed paths: where the app started; the README's one rule)."""
    return (f"Relative paths typed here start at the folder the app was started from, `{start}`; the saved file "
            "holds absolute paths.")


def set_options(spec: DatasetSpec | None) -> dict[str, bool]:
    """A set's switches that are on (`skip_unreadable`, ObjectNet's `crop_border`), as its TOML table writes them."""
    if spec is None:
        return {}
    return {k: True for k in ("skip_unreadable", "crop_border") if getattr(spec, k)}


def _kept(exp: Experiment) -> dict[str, Any]:
    """The settings the form does not show, carried over unchanged when an opened experiment is saved again."""
    top: dict[str, Any] = {"precision": exp.precision, "batch_size": exp.batch_size, "seed": exp.seed}
    if exp.workers is not None:
        top["workers"] = exp.workers
    if exp.cache_dir:
        top["cache_dir"] = str(exp.cache_dir)
    if exp.allow_other_zeroshot:
        top["allow_other_zeroshot"] = True
    sets = [("id", exp.id_set), ("val", exp.id_val)] + [(f"s{i}", s) for i, s in enumerate(exp.shifts)]
    return {"top": top, "preprocess": preprocess_table(exp.zeroshot.preprocess),
            "sets": {prefix: set_options(spec) for prefix, spec in sets if set_options(spec)}}


def form_of(exp: Experiment) -> Form:
    """An experiment's values as form fields (to edit an existing file on the page); `kept` holds the rest."""
    form: Form = {"name": exp.name, "model": exp.zeroshot.name, "pretrained": exp.zeroshot.pretrained or "",
                  "config": str(exp.zeroshot.config or ""), "finetuned": str(exp.finetuned or ""),
                  "classes": list_name(exp.classnames, "classes") or "\n".join(exp.classnames),
                  "templates": list_name(exp.templates, "templates") or "\n".join(exp.templates),
                  "device": exp.device, "head_policy": exp.head_policy, "nshifts": len(exp.shifts),
                  # the form edits the first fine-tuned endpoint; any others are carried over unchanged
                  "endpoint_name": exp.endpoints[0].name if exp.endpoints else "",
                  "more_endpoints": [(e.name, str(e.checkpoint)) for e in exp.endpoints[1:]], "kept": _kept(exp)}
    for prefix, spec in [("id", exp.id_set), ("val", exp.id_val)] + [(f"s{i}", s) for i, s in enumerate(exp.shifts)]:
        form.update({f"{prefix}_source": spec.source if spec else "", f"{prefix}_limit": (spec.limit or 0) if spec else 0,
                     f"{prefix}_mapping": str(spec.mapping or "") if spec else "",
                     f"{prefix}_preset": (spec.preset or "") if spec else "",
                     f"{prefix}_classes": "\n".join(spec.classes or ()) if spec else ""})
        if spec:  # the ID sets' names have no field: kept as the file has them
            form[f"{prefix}_name"] = spec.name
    return form


def preset_choices() -> list[str]:
    """The preset field's options: "" (a plain class-folder layout) and every dataset preset."""
    return ["", *PRESETS]


def default_form() -> Form:
    """The fields of a new, empty experiment."""
    return {"name": "my experiment", "templates": "openai", "device": "auto", "head_policy": "auto",
            "nshifts": 1}


def experiment_to_toml(exp: Experiment) -> str:
    """Serialise an experiment back to TOML text (absolute paths), for the app's experiment builder."""

    def q(value: Any) -> str:
        return json.dumps(str(value)) if not isinstance(value, (int, list, tuple)) else json.dumps(
            list(value) if isinstance(value, tuple) else value)

    lines = [f"name = {q(exp.name)}", f"device = {q(exp.device)}", f"precision = {q(exp.precision)}",
             f"head_policy = {q(exp.head_policy)}", f"batch_size = {exp.batch_size}", f"seed = {exp.seed}"]
    if exp.workers is not None:
        lines.append(f"workers = {exp.workers}")
    if exp.cache_dir:
        lines.append(f"cache_dir = {q(exp.cache_dir)}")
    if exp.allow_other_zeroshot:
        lines.append("allow_other_zeroshot = true")
    lines += ["", "[zeroshot]", f"model = {q(exp.zeroshot.name)}"]
    if exp.zeroshot.pretrained:
        lines.append(f"pretrained = {q(exp.zeroshot.pretrained)}")
    if exp.zeroshot.config:
        lines.append(f"config = {q(exp.zeroshot.config)}")
    if preprocess := preprocess_table(exp.zeroshot.preprocess):
        lines += ["", "[zeroshot.preprocess]", *(f"{k} = {q(v)}" for k, v in preprocess.items())]
    if len(exp.endpoints) > 1:
        for endpoint in exp.endpoints:
            lines += ["", "[[finetuned]]", f"name = {q(endpoint.name)}", f"checkpoint = {q(endpoint.checkpoint)}"]
    elif exp.endpoints:
        lines += ["", "[finetuned]", f"name = {q(exp.endpoints[0].name)}", f"checkpoint = {q(exp.finetuned)}"]
    # A built-in list is written by name: 1,000 ImageNet names would bury the file's settings.
    lines += ["", "[classes]", f"names = {q(list_name(exp.classnames, 'classes') or exp.classnames)}",
              f"templates = {q(list_name(exp.templates, 'templates') or exp.templates)}"]
    for header, ds in [("[id]", exp.id_set), ("[id_val]", exp.id_val)] + [("[[shifts]]", s) for s in exp.shifts]:
        if ds is None:
            continue
        lines += ["", header, f"name = {q(ds.name)}", f"source = {q(ds.source)}"]
        if ds.preset:
            lines.append(f"preset = {q(ds.preset)}")
        if ds.classes:
            lines.append(f"classes = {q(ds.classes)}")
        if ds.mapping:
            lines.append(f"mapping = {q(ds.mapping)}")
        if ds.limit:
            lines.append(f"limit = {ds.limit}")
        lines += [f"{k} = true" for k in set_options(ds)]
    return "\n".join(lines) + "\n"
