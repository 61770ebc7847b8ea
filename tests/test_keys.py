"""Cache keys name content, not places: a set copied elsewhere (times kept) has the same key; a changed one does not."""

from __future__ import annotations

import os
import shutil

from wiseft_explorer.experiment import DatasetSpec
from wiseft_explorer.store import set_fingerprint


def test_a_folder_set_is_keyed_by_what_it_holds_wherever_it_lies(tmp_path):
    original = tmp_path / "data" / "val"
    (original / "cat").mkdir(parents=True)
    (original / "cat" / "1.png").write_bytes(b"x" * 10)
    (original / "dog").mkdir()
    (original / "dog" / "2.png").write_bytes(b"y" * 20)
    copy = shutil.copytree(original, tmp_path / "cluster" / "mnt" / "imagenet-val")  # copy2 keeps the times
    key = set_fingerprint(DatasetSpec("ID", str(original)))
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) == key
    assert set_fingerprint(DatasetSpec("ID", str(original), limit=1)) != key
    assert set_fingerprint(DatasetSpec("ID", str(original), preset="imagenet")) != key
    (copy / "dog" / "2.png").write_bytes(b"z" * 21)  # another file: another key
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) != key
    shutil.copy2(original / "dog" / "2.png", copy / "dog" / "2.png")
    os.utime(copy / "dog" / "2.png", ns=(1, 1))  # same size, other time: it may have changed, so another key
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) != key
    assert set_fingerprint(DatasetSpec("w", "world:sketch")) != set_fingerprint(DatasetSpec("w", "world:cartoon"))


def test_a_fingerprint_difference_names_whole_classes_not_cut_strings():
    from wiseft_explorer.store import fingerprint_difference

    theirs = "|".join(["red square", "green circle", "blue stripes", "yellow stars"])
    ours = "|".join(["red square", "green circle", "blue stripes here"])
    text = fingerprint_difference("classes", theirs, ours)
    assert text == "classes differ: 'blue stripes', 'yellow stars' only there; 'blue stripes here' only here"
    many = fingerprint_difference("classes", "|".join(f"c{i}" for i in range(8)), "c0")
    assert many == "classes differ: 'c1', 'c2', 'c3' and 4 more only there"
    swapped = fingerprint_difference("templates", "a {}.|the {}.", "the {}.|a {}.")
    assert swapped == "the same templates in another order (template 1 is 'a {}.' there, 'the {}.' here)"
    assert fingerprint_difference("finetuned", "a" * 64, "b" * 64) == "the finetuned content differs (another file or version)"
    assert fingerprint_difference("precision", "fp16", "fp32") == "precision is 'fp16' there, 'fp32' here"
