"""CPU batch workers: same logits as one sequential pass, deterministic chunking, torch's thread count restored."""

from __future__ import annotations

import threading

import pytest
import torch
from libkit import set_images, shared_runtime

from wiseft_explorer.evaluation import POOL_MIN_IMAGES, cpu_workers, predict_logits, worker_pool


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_workers_give_the_logits_of_a_sequential_pass(tiny, two_threads):
    runtime = shared_runtime(tiny)
    model = runtime.models.finetuned
    images = set_images(runtime, "ID")
    images = torch.cat([images] * (POOL_MIN_IMAGES // len(images) + 1))
    assert cpu_workers("cpu", len(images)) == 2  # this really goes through the pool
    parallel = predict_logits(model, images, "cpu", batch_size=100)
    with torch.inference_mode():
        torch.set_num_threads(1)
        sequential = torch.cat([model(images[i:i + 1]) for i in range(len(images))])
        torch.set_num_threads(2)
    assert parallel.shape == sequential.shape
    torch.testing.assert_close(parallel, sequential, rtol=1e-5, atol=1e-5)
    # Repeated calls chunk the same way, so they agree bit for bit (the app compares sessions exactly).
    assert torch.equal(parallel, predict_logits(model, images, "cpu", batch_size=100))


def test_worker_count_follows_torch_threads_and_device(two_threads):
    assert cpu_workers("cpu", 700) == 2
    assert cpu_workers("cpu", 16) == 1  # a few images: the per-call cost dominates, the calling thread is faster
    assert cpu_workers("meta", 700) == 1  # accelerators batch on the device instead
    torch.set_num_threads(1)
    assert cpu_workers("cpu", 700) == 1


def test_pool_workers_run_single_threaded_and_leave_the_callers_count_alone(two_threads):
    pool = worker_pool(2)
    assert sorted(pool.map(lambda _: torch.get_num_threads(), range(8))) == [1] * 8
    assert torch.get_num_threads() == 2
    fresh: list[int] = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join(10)
    assert fresh == [2]  # new threads (Streamlit's script runs, sweep jobs) still get every core
    assert worker_pool(2) is pool  # one shared pool: concurrent callers queue instead of oversubscribing


def test_concurrent_callers_share_the_pool_and_get_their_own_exact_logits(tiny, two_threads):
    runtime = shared_runtime(tiny)
    images = set_images(runtime, "ID")
    images = torch.cat([images] * (POOL_MIN_IMAGES // len(images) + 1))
    models = {"zs": runtime.models.zeroshot, "ft": runtime.models.finetuned}
    reference = {k: predict_logits(m, images, "cpu", batch_size=100) for k, m in models.items()}
    mismatches: list[str] = []
    errors: list[BaseException] = []

    def caller(key: str) -> None:
        try:
            for _ in range(3):
                if not torch.equal(predict_logits(models[key], images, "cpu", batch_size=100), reference[key]):
                    mismatches.append(key)
        except BaseException as err:  # reported below: an exception in a thread would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=caller, args=(k,)) for k in ("zs", "ft", "zs", "ft")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not mismatches and not any(t.is_alive() for t in threads)
