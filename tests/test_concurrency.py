"""Sessions sharing one runtime: threads at different alphas see their own results; memory stays bounded."""

from __future__ import annotations

import gc
import random
import threading

import psutil
import pytest
import torch
from libkit import set_images, shared_runtime

from wiseft_explorer.data import ImageDecodeError, decode_image
from wiseft_explorer.evaluation import predict_logits, predict_three, preprocess

ALPHAS = [0.0, 0.15, 0.5, 0.85, 1.0, 1.3, -0.2]
THREADS = 8


def test_threads_with_their_own_working_models_match_a_single_threaded_reference(tiny):
    runtime = shared_runtime(tiny)
    images = set_images(runtime, "ID")[:4]
    reference_working = runtime.new_working()
    reference = {a: predict_logits(runtime.classifier_at(reference_working, a), images, runtime.device)
                 for a in ALPHAS}
    reference_three = predict_three(runtime, images[:1], 0.5, reference_working)
    assert not torch.allclose(reference[0.0], reference[1.0])
    barrier = threading.Barrier(THREADS)
    mismatches: list[str] = []
    errors: list[BaseException] = []

    def session(seed: int) -> None:
        try:
            working = runtime.new_working()
            order = ALPHAS * 2
            random.Random(seed).shuffle(order)
            barrier.wait()
            for step, alpha in enumerate(order):
                model = runtime.classifier_at(working, alpha)
                logits = predict_logits(model, images, runtime.device)
                if not torch.equal(logits, reference[alpha]):
                    mismatches.append(f"thread {seed} step {step} alpha {alpha}")
                if step % 5 == seed % 5:  # now and then the three-way prediction, as the upload page does
                    three = predict_three(runtime, images[:1], 0.5, working)
                    if any(three[k][0].probs != reference_three[k][0].probs for k in three):
                        mismatches.append(f"thread {seed} step {step} predict_three")
        except BaseException as err:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert not mismatches, mismatches[:5]


def test_two_hundred_alpha_changes_keep_memory_bounded(tiny):
    runtime = shared_runtime(tiny)
    images = set_images(runtime, "ID")[:2]
    working = runtime.new_working()
    process = psutil.Process()
    rng = random.Random(0)

    def change(n: int) -> None:
        for i in range(n):
            model = runtime.classifier_at(working, rng.uniform(-0.5, 1.5))
            if i % 10 == 0:
                predict_logits(model, images, runtime.device)

    change(20)  # warm-up: allocator pools and lazy initialisation
    gc.collect()
    before = process.memory_info().rss
    change(200)
    gc.collect()
    grown = (process.memory_info().rss - before) / 2**20
    assert grown < 50, f"RSS grew by {grown:.1f} MB over 200 alpha changes"


def test_bad_inputs_leave_the_session_working(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    working = runtime.new_working()
    good_path = next((tiny.id_dir / "red square").iterdir())
    good = preprocess(runtime, [decode_image(good_path)])
    expected = predict_three(runtime, good, 0.4, runtime.new_working())
    for bad in (b"", b"GIF89a-truncated", b"\x89PNG\r\n\x1a\n" + b"\0" * 20):
        with pytest.raises(ImageDecodeError):
            decode_image(bad, "upload.png")
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        runtime.classifier_at(working, float("nan"))
    with pytest.raises(RuntimeError):  # wrong image size for the tower
        predict_three(runtime, torch.zeros(1, 3, 17, 17), 0.4, working)
    with pytest.raises(KeyError, match="no set named 'Nope'"):
        runtime.eval_set("Nope")
    after = predict_three(runtime, good, 0.4, working)
    assert {k: v[0].probs for k, v in after.items()} == {k: v[0].probs for k, v in expected.items()}
