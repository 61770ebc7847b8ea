"""CPU batch workers: same logits as one sequential pass, deterministic chunking, torch's thread count restored."""

from __future__ import annotations

import threading

import pytest
import torch
from libkit import shared_runtime

from wiseft_explorer.batching import cpu_workers, predict_logits, worker_pool


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_workers_give_the_logits_of_a_sequential_pass(tiny, two_threads):
    runtime = shared_runtime(tiny)
    model = runtime.models.finetuned
    images = torch.cat([runtime.eval_set("ID").images] * 3)
    parallel = predict_logits(model, images, "cpu", batch_size=4)
    with torch.inference_mode():
        torch.set_num_threads(1)
        sequential = torch.cat([model(images[i:i + 1]) for i in range(len(images))])
        torch.set_num_threads(2)
    assert parallel.shape == sequential.shape
    torch.testing.assert_close(parallel, sequential, rtol=1e-5, atol=1e-5)
    # Repeated calls chunk the same way, so they agree bit for bit (the app compares sessions exactly).
    assert torch.equal(parallel, predict_logits(model, images, "cpu", batch_size=4))


def test_worker_count_follows_torch_threads_and_device(two_threads):
    assert cpu_workers("cpu", 100) == 2
    assert cpu_workers("cpu", 1) == 1
    assert cpu_workers("meta", 100) == 1  # accelerators batch on the device instead
    torch.set_num_threads(1)
    assert cpu_workers("cpu", 100) == 1


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
