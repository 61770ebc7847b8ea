"""A classroom on one server (issue #16, item 5): the shared pool of working models, reuse of a model already at
the alpha asked for, and 30 sessions plus a browser at their own alphas through a real `streamlit run app.py`."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import open_clip
import pytest
import torch
from tiny import CLASSES, TEMPLATES, fake_finetune, write_folder

from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
from wiseft_explorer.evaluation import WORKING_POOL, ExperimentRuntime
from wiseft_explorer.experiment import ModelSpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import classroom  # noqa: E402

# The tiny experiment's data and classes with a wider image tower (3.2 M weights, 12.6 MB per working model): big
# enough that a copy per session (30 x 12.6 MB) would stand far above Streamlit's own per-session state, small
# enough to load in a second.
MODEL = "wiseft-classroom-vit"
CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 4, "width": 256, "patch_size": 8},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
CHROMIUM = Path("/usr/bin/chromium")


def make_classroom_experiment(root: Path) -> Path:
    """The tiny experiment (three coloured-shape classes, an ID and a darker shift folder) on a wider ViT."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / f"{MODEL}.json"
    config.write_text(json.dumps(CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    zs_path = save_checkpoint(root / "zeroshot.safetensors", open_clip.create_model(MODEL).state_dict())
    clip = load_clip(ModelSpec(MODEL, str(zs_path), config))
    ft = fake_finetune(build_zeroshot(clip, CLASSES, TEMPLATES), seed=0)
    save_checkpoint(root / "finetuned.safetensors", ft.state_dict(), classifier_metadata(clip, CLASSES))
    write_folder(root / "id", 4, seed=1)
    write_folder(root / "shift", 3, seed=2, shifted=True)
    toml = root / "classroom.toml"
    toml.write_text(f'name = "classroom test experiment"\ndevice = "cpu"\nbatch_size = 8\n\n'
                    f'[zeroshot]\nmodel = "{MODEL}"\npretrained = "zeroshot.safetensors"\nconfig = "{config.name}"\n\n'
                    f'[finetuned]\ncheckpoint = "finetuned.safetensors"\n\n'
                    f'[classes]\nnames = {json.dumps(CLASSES)}\ntemplates = {json.dumps(TEMPLATES)}\n\n'
                    f'[id]\nname = "ID"\nsource = "id"\n\n[[shifts]]\nname = "Dark"\nsource = "shift"\n')
    return toml


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """The classroom experiment, built once for this module."""
    return make_classroom_experiment(tmp_path_factory.mktemp("classroom"))


@pytest.fixture
def runtime(experiment) -> ExperimentRuntime:
    """A fresh runtime (its own pool) of the classroom experiment."""
    return ExperimentRuntime.from_path(experiment)


def _lerps(monkeypatch) -> list[float]:
    """Count the weight writes (one torch.lerp per dtype buffer) from now on."""
    calls, real = [], torch.lerp

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "lerp", counting)
    return calls


def test_a_free_model_already_at_the_alpha_is_reused_without_a_lerp(runtime, monkeypatch):
    images = torch.rand(2, 3, 32, 32)
    fresh = runtime.classifier_at(runtime.new_working(), 0.3)(images)
    with runtime.borrow_working(0.3) as working:
        assert working.alpha == 0.3 and torch.equal(working.model(images), fresh)
    lerps = _lerps(monkeypatch)
    with runtime.borrow_working(0.3) as working:
        out = runtime.classifier_at(working, 0.3)(images)
    assert lerps == [] and runtime.pool_reused == 1 and torch.equal(out, fresh)
    with runtime.borrow_working(0.7) as working:  # another alpha: the same model, rewritten
        assert working.alpha == 0.7 and lerps == [0.7] and not torch.equal(working.model(images), fresh)
    assert runtime.pool_reused == 1 and runtime._pool_made == 1


def test_reuse_picks_the_model_at_that_alpha_and_rewrites_the_oldest_otherwise(runtime):
    images = torch.rand(2, 3, 32, 32)
    reference = runtime.new_working()
    expected = {a: runtime.classifier_at(reference, a)(images) for a in (0.2, 0.5, 0.8)}
    with runtime.borrow_working(0.2) as first, runtime.borrow_working(0.8) as second:
        assert first is not second  # both lent out at once: the pool made its second model
    with runtime.borrow_working(0.8) as working:
        assert working is second and torch.equal(working.model(images), expected[0.8])
    with runtime.borrow_working(0.5) as working:  # nobody is at 0.5: the least recently returned is rewritten
        assert working is first and torch.equal(working.model(images), expected[0.5])
    assert runtime.pool_reused == 1 and runtime._pool_made == WORKING_POOL


def test_a_borrower_that_fails_half_way_leaves_no_model_claiming_its_alpha(runtime):
    images = torch.rand(2, 3, 32, 32)
    expected = runtime.classifier_at(runtime.new_working(), 0.4)(images)
    with pytest.raises(RuntimeError), runtime.borrow_working(0.4) as working:
        next(iter(working.flats.values()))[:1000] = 0.0  # as if stopped while writing its weights
        raise RuntimeError("stopped")
    assert working.alpha is None
    with runtime.borrow_working(0.4) as again:
        assert again is working and torch.equal(again.model(images), expected)
    assert runtime.pool_reused == 0


def test_threads_reusing_the_pool_each_compute_at_their_own_alpha(runtime):
    images = torch.rand(3, 3, 32, 32)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0, 1.2]
    reference = runtime.new_working()
    expected = {a: runtime.classifier_at(reference, a)(images) for a in alphas}
    barrier, mismatches, errors = threading.Barrier(len(alphas)), [], []

    def session(alpha: float) -> None:
        try:
            barrier.wait()
            for _ in range(6):
                with runtime.borrow_working(alpha) as working:
                    if not torch.equal(working.model(images), expected[alpha]):
                        mismatches.append(alpha)
        except BaseException as err:  # reported below: an exception in a thread would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=session, args=(a,)) for a in alphas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not mismatches
    assert runtime._pool_made <= WORKING_POOL and runtime.pool_reused > 0


def test_memory_bytes_counts_lent_out_models(runtime):
    runtime.space  # noqa: B018 (models and the weight line loaded, no working model yet)
    idle = runtime.memory_bytes()
    per_model = sum(f.numel() * f.element_size() for f in runtime.space.theta0.values())
    with runtime.borrow_working(0.5):
        assert runtime.memory_bytes() == idle + per_model  # lent out, still held: the registry's budget sees it
    assert runtime.memory_bytes() == idle + per_model


def test_a_shared_result_is_computed_once_and_kept_within_its_bytes(runtime, monkeypatch):
    monkeypatch.setattr("wiseft_explorer.evaluation.runtime.SHARED_BYTES", 3 * 400)
    calls = []

    def compute(value: float) -> torch.Tensor:
        calls.append(value)
        return torch.full((100,), value)  # 400 bytes

    first = runtime.shared_tensor("a", lambda: compute(1.0))
    assert runtime.shared_tensor("a", lambda: compute(9.0)) is first and calls == [1.0]
    for key in "bcd":  # three more: "a", the least recently used, is dropped
        runtime.shared_tensor(key, lambda: compute(2.0))
    assert runtime.shared_tensor("a", lambda: compute(3.0))[0] == 3.0 and calls == [1.0, 2.0, 2.0, 2.0, 3.0]


def test_an_images_curve_along_alpha_is_computed_once_for_every_alpha_and_session(runtime, monkeypatch):
    import wiseft_explorer.evaluation.predict as predict

    curves, real = [], predict.probability_along_alpha
    monkeypatch.setattr(predict, "probability_along_alpha", lambda *a, **k: curves.append(1) or real(*a, **k))
    example = predict.set_example(runtime, "ID", 0)
    with runtime.borrow_working() as working:
        at_03 = predict.analyse_images(runtime, working, [predict.set_example(runtime, "ID", 0)], 0.3)[0]
        expected = real(runtime, predict.preprocess(runtime, [example.image]), working)[:, 0]
        at_08 = predict.analyse_images(runtime, working, [predict.set_example(runtime, "ID", 0)], 0.8)[0]
    assert len(curves) == 1 and at_03.curve.equals(at_08.curve)
    assert at_03.curve.equals(predict.curve_frame(expected, runtime.experiment.classnames))
    assert at_03.top["alpha"] != at_08.top["alpha"]  # the top-5 at alpha is still the session's own


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (installed by .ci/run)")
def test_thirty_sessions_and_a_browser_each_see_their_own_alpha_within_the_pool_budget(experiment, tmp_path):
    # Two malloc arenas: thread arenas that glibc keeps after a busy moment (more of them the busier the machine)
    # would blur the figure that matters here, working models per session.
    figures = classroom.classroom(experiment, tmp_path / "cache", sessions=30, browsers=1, rounds=2,
                                  think=(0.2, 1.0), arenas=2)
    summary = json.dumps(figures, indent=1)[:3000]
    assert figures["errors"] == [], summary
    # Every table of every session (its first alpha and two changes; the warm-up session's three; the browser's
    # read from its page) is the library's top-5 at that session's alpha, and none is another session's alpha on
    # the same image (isolation_checks counts the comparisons where the two alphas' tables differ).
    assert figures["tables_checked"] == 3 + 31 * 3 and figures["browser_tables"] == 3, summary
    assert figures["wrong_tables"] == [] and figures["other_students_alpha"] == [], summary
    assert figures["isolation_checks"] > 100, summary
    # Thirty-one sessions cost at most the pool's second working model and Streamlit's own state per session.
    assert figures["within_bound"], summary


def test_an_upload_alpha_change_reruns_only_the_predictions(experiment, tmp_path):
    # Moving α on the Upload page reruns the fragment with the α controls and the predictions: not the sidebar, the
    # source picker or the example thumbnails (half of the server's work per change before). The websocket client
    # sends the fragment's id as a browser does, and the run still shows the θ_α table at the new α.
    import asyncio

    import streamlit_client as sc

    proc, url = sc.start_server(classroom.ROOT / "app.py", {"WISEFT_EXPERIMENT": str(experiment),
                                                            "WISEFT_CACHE_DIR": str(tmp_path / "cache")},
                                log=tmp_path / "server.log")

    async def visit() -> tuple[sc.Run, sc.Run]:
        session = sc.StreamlitSession(url, page="Upload", query="alpha=0.3")
        try:
            await session.open()
            await session.rerun({"upload_source": sc.string(classroom.EXAMPLES_OPTION)})
            example = next(key for key in session.widgets if key.startswith("example_") and key != "example_set")
            picked = await session.rerun({example: sc.trigger()})
            moved = await session.rerun({"alpha_number": sc.number(0.7), "alpha_submit": sc.trigger()})
            return picked, moved
        finally:
            await session.close()

    try:
        picked, moved = asyncio.run(visit())
    finally:
        proc.terminate()
        proc.wait(30)
    assert picked.finished == "FINISHED_SUCCESSFULLY" and moved.finished == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY"
    images = [sum(s.kind == "imgs" for s in run.shown) for run in (picked, moved)]
    assert images[0] > 1 and images[1] == 1, images  # the thumbnails and the picture, then the picture alone
    assert classroom._alpha_table(picked, 0.3) and classroom._alpha_table(moved, 0.7)
    assert picked.errors() == moved.errors() == []
