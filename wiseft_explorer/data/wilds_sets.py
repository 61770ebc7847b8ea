"""The WILDS shifts the paper reports, iWildCam and FMoW, read from their released layouts' metadata CSVs.

The `wilds` package is not a dependency: its readers need `ogb`, `outdated` (which starts a network check on
import) and scikit-learn, and its `get_dataset` wants to download. What it reads is two CSV files, so this module
reads them the same way (wilds 2.0.0's `iwildcam_dataset.py` and `fmow_dataset.py`, split scheme 'official'):

- iWildCam v2.0: `metadata.csv`'s rows whose `split` is the set's split ('id_test', 'test'), label `y`, image
  `train/<filename>` (every split's images live in train/).
- FMoW v1.1: `rgb_metadata.csv` without its 'seq' rows; OOD test = `split` 'test' and `timestamp` from 2016 on,
  ID test = `split` 'test' and `timestamp` before 2013 (the three years before 2016 are OOD validation); label =
  the `category`'s index in the 62 categories; image `images/rgb_img_<row>.png`, <row> counting every row of the
  CSV; region = `country_code_mapping.csv`'s `region` for the `country_code` ('alpha-3'), "Other" when unmapped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from ..experiment.presets import PresetError, PresetImages
from ..experiment.wilds_labels import FMOW_CLASSES
from ..results.metrics import MACRO_F1, PM10, TOP1_METRIC, WORST_REGION, SetMetric

OTHER_REGION = "Other"  # WILDS leaves it out of the worst-region accuracy
FMOW_OOD_FROM, FMOW_ID_BEFORE = "2016-01-01", "2013-01-01"  # split scheme 'official' = 'time_after_2016'


def _folder(key: str, source: Path, release: str, csv_name: str) -> Path:
    """The release folder (`source` itself, or `source/<release>`) holding its metadata CSV."""
    for folder in (source, source / release):
        if (folder / csv_name).is_file():
            return folder
    raise PresetError(key, source, f"no {csv_name} (neither here nor in {release}/)")


def _read_csv(key: str, path: Path, columns: tuple[str, ...]):  # -> pandas.DataFrame
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise PresetError(key, path.parent, f"cannot read {path.name}: {err}") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PresetError(key, path.parent, f"{path.name} has no column {missing[0]!r}")
    return table


def _existing(key: str, folder: Path, paths: list[Path]) -> list[str]:
    if not paths:
        raise PresetError(key, folder, "the metadata lists no image of this split")
    absent = next((p for p in paths if not p.is_file()), None)
    if absent is not None:
        raise PresetError(key, folder, f"{absent} is listed in the metadata but missing")
    return [str(p) for p in paths]


def read_iwildcam(source: Path, key: str, split: str) -> PresetImages:
    """An iWildCam split's labels and image files (nothing decoded)."""
    folder = _folder(key, source, "iwildcam_v2.0", "metadata.csv")
    table = _read_csv(key, folder / "metadata.csv", ("split", "y", "filename"))
    rows = table[table["split"] == split]
    try:
        labels = rows["y"].astype(np.int64).to_numpy()
    except ValueError as err:
        raise PresetError(key, folder, f"metadata.csv: a label `y` is not a whole number ({err})") from err
    paths = _existing(key, folder, [folder / "train" / name for name in rows["filename"]])
    return PresetImages(labels, paths)


def read_fmow(source: Path, key: str, ood: bool) -> PresetImages:
    """An FMoW test split's labels, image files and regions (nothing decoded)."""
    import pandas as pd

    folder = _folder(key, source, "fmow_v1.1", "rgb_metadata.csv")
    table = _read_csv(key, folder / "rgb_metadata.csv", ("split", "category", "country_code", "timestamp"))
    codes = _read_csv(key, folder / "country_code_mapping.csv", ("alpha-3", "region"))
    try:
        stamps = pd.to_datetime(table["timestamp"], utc=True, format="ISO8601")
    except ValueError as err:
        raise PresetError(key, folder, f"rgb_metadata.csv: unreadable timestamp ({err})") from err
    when = stamps >= pd.Timestamp(FMOW_OOD_FROM, tz="UTC") if ood else stamps < pd.Timestamp(FMOW_ID_BEFORE, tz="UTC")
    rows = np.flatnonzero(((table["split"] == "test") & when).to_numpy())
    index = {name: i for i, name in enumerate(FMOW_CLASSES)}
    unknown = next((c for c in table["category"].iloc[rows] if c not in index), None)
    if unknown is not None:
        raise PresetError(key, folder, f"rgb_metadata.csv: unknown category {unknown!r}")
    labels = np.array([index[c] for c in table["category"].iloc[rows]], dtype=np.int64)
    to_region = dict(zip(codes["alpha-3"], codes["region"], strict=True))
    names = [to_region.get(code, OTHER_REGION) for code in table["country_code"].iloc[rows]]
    ranked = sorted({n for n in names if OTHER_REGION not in n})
    regions = np.array([ranked.index(n) if n in ranked else -1 for n in names], dtype=np.int64)
    paths = _existing(key, folder, [folder / "images" / f"rgb_img_{row}.png" for row in rows])
    return PresetImages(labels, paths, regions=regions)


READERS: dict[str, Callable[[Path], PresetImages]] = {
    "iwildcam-id-test": partial(read_iwildcam, key="iwildcam-id-test", split="id_test"),
    "iwildcam-test": partial(read_iwildcam, key="iwildcam-test", split="test"),
    "fmow-id-test": partial(read_fmow, key="fmow-id-test", ood=False),
    "fmow-test": partial(read_fmow, key="fmow-test", ood=True),
}


def preset_metric_of(metric: str, labels: np.ndarray, found: PresetImages, chosen: np.ndarray,
                     to_exp: np.ndarray) -> SetMetric:
    """A preset set's metric over its chosen images (rows `chosen` of what its reader found; labels already in
    the experiment's classes, `to_exp` mapping the reader's classes there)."""
    if metric == MACRO_F1:
        return SetMetric(MACRO_F1, labels=labels)
    if metric == WORST_REGION and found.regions is not None:
        return SetMetric(WORST_REGION, labels=labels, groups=found.regions[chosen])
    if metric == PM10 and found.pmk is not None:
        return pmk_metric(found.pmk, chosen, to_exp)
    return TOP1_METRIC


def pmk_metric(pmk: tuple[np.ndarray, np.ndarray], chosen: np.ndarray, to_exp: np.ndarray) -> SetMetric:
    """pm-k over the chosen images: anchors renumbered to their rows; an anchor with a frame left out (a `limit`
    sample) is not scored, since it could not be scored as the paper scores it."""
    frames, right = pmk
    row = np.full(len(right), -1, dtype=np.int64)
    row[chosen] = np.arange(len(chosen))
    members = frames >= 0
    moved = np.where(members, row[np.maximum(frames, 0)], -1)
    whole = (moved >= 0).sum(axis=1) == members.sum(axis=1)
    rights = np.where(right[chosen] >= 0, to_exp[np.maximum(right[chosen], 0)], -1)
    return SetMetric(PM10, frames=moved[whole], right=rights)
