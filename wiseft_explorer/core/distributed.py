"""Past one process: torch.distributed from torchrun's environment, collectives with timeouts, clear errors.

torchrun (also under SLURM's srun) starts one process per GPU or per group of cores and tells each its RANK,
WORLD_SIZE, LOCAL_RANK and where the group meets (MASTER_ADDR:MASTER_PORT). Without those variables every command
runs in one process, as it always did. NCCL joins GPU processes, gloo CPU ones; every collective has a timeout
(WISEFT_DIST_TIMEOUT seconds), so a rank whose peer died or whose network went away fails with a message instead
of waiting forever.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

ENV_TIMEOUT = "WISEFT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0  # torch's own default for gloo; ranks finish their parts minutes apart on a busy cluster
RESUME_HINT = "run the same command again: every rank resumes from its saved state"


class DistributedError(RuntimeError):
    """The process group could not be joined, or a collective failed (a peer died, the network went away)."""


@dataclass(frozen=True)
class Group:
    """This process's place in the job: rank of world_size (1 and no backend: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" or "gloo" once joined

    @property
    def is_root(self) -> bool:
        """Whether this process writes results (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there are other processes to talk to."""
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        """Where collective tensors live: NCCL needs them on this rank's GPU, gloo on the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def describe(self) -> str:
        """'rank 1 of 4 (gloo)'."""
        return f"rank {self.rank} of {self.world_size} ({self.backend})" if self.distributed else "one process"


def launched() -> bool:
    """Whether torchrun (or a launcher setting the same variables) started this process as part of a group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout_seconds() -> float:
    """The timeout of joining and of every collective: $WISEFT_DIST_TIMEOUT, else 30 min."""
    return float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))


def choose_backend(device: str) -> str:
    """NCCL when this process will compute on a GPU, gloo otherwise (CPU, or a machine without CUDA)."""
    wants_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_gpu and torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def setup(device: str = "auto") -> Group:
    """Join the group torchrun described in the environment (a single-process Group when there is none)."""
    if not launched():
        return Group()
    env = os.environ
    rank, world, local = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    backend = choose_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(local)  # before any model loads: "cuda" then means this rank's GPU
    where = f"{env.get('MASTER_ADDR', '?')}:{env.get('MASTER_PORT', '?')}"
    timeout = timeout_seconds()
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError, OSError) as err:  # DistNetworkError and DistStoreError are RuntimeErrors
        raise DistributedError(
            f"rank {rank} of {world} could not join the process group at {where} within {timeout:g} s "
            f"({_first_line(err)}); check that every node reaches that address (--rdzv-endpoint, firewall) and "
            f"that all {world} processes were started") from err
    _save_state_on_sigterm()
    return Group(rank, world, local, backend)


def teardown(group: Group) -> None:
    """Leave the process group (no-op for a single process)."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Group]:
    """setup() ... teardown(), also when the body fails."""
    group = setup(device)
    try:
        yield group
    finally:
        teardown(group)


def _save_state_on_sigterm() -> None:
    """Turn torchrun's SIGTERM (sent to every rank when one of them failed) into an exception.

    Python's default is to die on the spot; as an exception, the streaming engine saves the batches done so far,
    so the restarted job loses less work.
    """
    def stop(signum: int, _frame) -> None:
        raise KeyboardInterrupt(f"signal {signum}: another rank failed or the job was stopped")

    with contextlib.suppress(ValueError):  # not the main thread (tests): keep the default
        signal.signal(signal.SIGTERM, stop)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _collective(group: Group, what: str) -> Iterator[None]:
    """Name the step and the way out when a collective fails (a peer died, or the timeout passed)."""
    try:
        yield
    except (RuntimeError, OSError) as err:
        raise DistributedError(f"{group.describe()}: {what} failed ({_first_line(err)}); another rank probably "
                               f"stopped or the network failed; {RESUME_HINT}") from err


def all_reduce_sum(group: Group, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over every rank (a copy; the input is untouched)."""
    if not group.distributed:
        return tensor.clone()
    work = tensor.to(group.device, copy=True)
    with _collective(group, "summing the counts"):
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def _lengths(group: Group, n: int) -> list[int]:
    sizes = torch.tensor([n], dtype=torch.int64, device=group.device)
    gathered = [torch.zeros_like(sizes) for _ in range(group.world_size)]
    dist.all_gather(gathered, sizes)
    return [int(s.item()) for s in gathered]


def gather_bytes(group: Group, payload: bytes) -> list[bytes] | None:
    """Every rank's payload, in rank order, on rank 0 (None on the others).

    Bytes, not pickled objects: what comes from another process is parsed as data (safetensors, JSON), never
    unpickled. Payloads are padded to the longest for the transfer only.
    """
    if not group.distributed:
        return [payload]
    with _collective(group, "gathering the per-image results on rank 0"):
        lengths = _lengths(group, len(payload))
        longest = max(lengths)
        mine = torch.zeros(longest, dtype=torch.uint8)
        if payload:
            mine[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
        mine = mine.to(group.device)
        parts = [torch.empty(longest, dtype=torch.uint8, device=group.device) for _ in lengths] \
            if group.is_root else None
        dist.gather(mine, parts, dst=0)
    if not group.is_root:
        return None
    assert parts is not None  # rank 0 made the receiving buffers above
    return [part[:n].cpu().numpy().tobytes() for part, n in zip(parts, lengths, strict=True)]


def broadcast_bytes(group: Group, payload: bytes | None) -> bytes:
    """Rank 0's payload on every rank (the others pass None)."""
    if not group.distributed:
        return payload or b""
    mine = b""  # what the other ranks pass is never sent
    if group.is_root:
        if payload is None:
            raise ValueError("broadcast_bytes: rank 0 must pass the payload the other ranks wait for")
        mine = payload
    with _collective(group, "receiving rank 0's decision"):
        n = torch.tensor([len(mine)], dtype=torch.int64, device=group.device)
        dist.broadcast(n, src=0)
        data = torch.zeros(int(n.item()), dtype=torch.uint8)
        if mine:
            data[:] = torch.frombuffer(bytearray(mine), dtype=torch.uint8)
        data = data.to(group.device)
        dist.broadcast(data, src=0)
    return data.cpu().numpy().tobytes()


def provenance(group: Group, device: torch.device | str) -> dict[str, str | int | None]:
    """Where and how results were computed: machine, world size, backend, device and date (UTC)."""
    return {"machine": socket.gethostname(), "world_size": group.world_size, "backend": group.backend,
            "device": str(device), "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def provenance_line(record: dict) -> str:
    """'host-a, 2 processes (gloo, cpu), 2025-06-01 10:12 UTC'."""
    world = int(record.get("world_size") or 1)
    how = f"{world} processes ({record.get('backend')}, {record.get('device')})" if world > 1 \
        else f"1 process ({record.get('device')})"
    line = f"{record.get('machine', 'unknown machine')}, {how}, {record.get('date', 'unknown date')}"
    return line + (f", imported from {record['imported']}" if record.get("imported") else "")
