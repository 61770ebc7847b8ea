"""Tiny fake copies of WILDS' iWildCam v2.0 and FMoW v1.1 releases: their metadata CSVs and a few images."""

from __future__ import annotations

from pathlib import Path

from fake_datasets import png_bytes

# (split, y): two ID-test and five OOD-test images of classes 0, 1, 2 and 5, and rows of other splits.
IWILDCAM_ROWS = [("train", 3), ("id_test", 0), ("test", 1), ("test", 1), ("id_test", 2), ("test", 5), ("val", 4),
                 ("test", 0), ("test", 2)]
# (split, category, country_code, timestamp): 'seq' rows are dropped, CHE -> Europe, ZZZ is unmapped (Other).
FMOW_ROWS = [("train", "airport", "USA", "2005-03-01T10:00:00Z"), ("seq", "zoo", "USA", "2017-01-01T00:00:00Z"),
             ("test", "barn", "USA", "2010-06-01T00:00:00Z"), ("test", "dam", "CHE", "2012-12-31T23:59:59Z"),
             ("test", "zoo", "CHE", "2014-01-01T00:00:00Z"), ("test", "airport", "USA", "2016-01-01T00:00:00Z"),
             ("test", "barn", "CHE", "2017-05-05T00:00:00Z"), ("test", "dam", "ZZZ", "2016-07-01T00:00:00Z"),
             ("val", "barn", "USA", "2016-02-01T00:00:00Z"), ("test", "zoo", "KEN", "2017-02-01T00:00:00Z")]


def fake_iwildcam(root: Path) -> Path:
    folder = root / "iwildcam_v2.0"
    (folder / "train").mkdir(parents=True)
    lines = ["split,y,filename,location_remapped"]
    for i, (split, y) in enumerate(IWILDCAM_ROWS):
        lines.append(f"{split},{y},img{i}.jpg,{i % 3}")
        (folder / "train" / f"img{i}.jpg").write_bytes(png_bytes(colour=(10 * i, 60, 90)))
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def fake_fmow(root: Path) -> Path:
    folder = root / "fmow_v1.1"
    (folder / "images").mkdir(parents=True)
    lines = ["split,img_filename,category,country_code,timestamp"]
    for i, (split, category, code, stamp) in enumerate(FMOW_ROWS):
        lines.append(f"{split},{category}_{i}.jpg,{category},{code},{stamp}")
        (folder / "images" / f"rgb_img_{i}.png").write_bytes(png_bytes(colour=(90, 10 * i, 30)))
    (folder / "rgb_metadata.csv").write_text("\n".join(lines) + "\n")
    (folder / "country_code_mapping.csv").write_text("name,alpha-2,alpha-3,region\nUnited States,US,USA,Americas\n"
                                                      "Switzerland,CH,CHE,Europe\nKenya,KE,KEN,Africa\n")
    return folder
