"""Multi-process start-up: `jax.distributed.initialize()` from flags or the cluster's environment.

One JAX process per host (TPU pod slice, Slurm, Open MPI, Kubernetes) or several on one machine with
CPU devices (scripts/launch_local.py). Every process must run the same config:
`biggan.config.check_same_config` compares them at start-up and names the keys that differ.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from biggan.runtime import sharding

log = logging.getLogger(__name__)

# Environment variables that mean "this process is one of several that JAX can discover by itself".
_CLUSTER_HINTS = {
    "SLURM_NTASKS": "Slurm",
    "OMPI_COMM_WORLD_SIZE": "Open MPI",
    "TPU_WORKER_HOSTNAMES": "TPU pod",
    "JAX_COORDINATOR_ADDRESS": "JAX_COORDINATOR_ADDRESS",
}


def _cluster_detected() -> str | None:
    for var, name in _CLUSTER_HINTS.items():
        value = os.environ.get(var, "")
        if var == "TPU_WORKER_HOSTNAMES" and "," not in value:
            continue
        if var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE") and (
            not value.isdigit() or int(value) < 2
        ):
            continue
        if value:
            return name
    # JAX's TPU detectors (a Cloud TPU VM answers through its metadata server, not the environment)
    try:
        from jax._src import clusters

        for env in clusters.ClusterEnv._cluster_types:
            # Slurm / Open MPI are judged by the hints above: a single-task allocation is no
            # cluster.
            if env.name in ("gcetpu", "gketpu") and env.is_env_present():
                return env.name
    except Exception as e:  # noqa: BLE001 - a private API: when it moves, fall back to the hints above
        log.debug("JAX cluster auto-detection unavailable: %s", e)
    return None


def initialize(
    coordinator_address=None,
    num_processes=None,
    process_id=None,
    *,
    local_device_count=None,
    timeout=120,
):
    """Start JAX's distributed runtime when asked (flags) or when a cluster is detected; else no-op.

    Unset arguments fall back to the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    JAX_PROCESS_ID (Kubernetes, scripts/launch_local.py --pass_via=env) and JAX_NUM_CPU_DEVICES.
    """
    env = os.environ
    if (
        env.get("JAX_NUM_PROCESSES")
        and env.get("JAX_PROCESS_ID")
        and env.get("JAX_COORDINATOR_ADDRESS")
    ):
        coordinator_address = coordinator_address or env["JAX_COORDINATOR_ADDRESS"]
        num_processes = env["JAX_NUM_PROCESSES"] if num_processes is None else num_processes
        process_id = env["JAX_PROCESS_ID"] if process_id is None else process_id
    local_device_count = local_device_count or (
        env.get("JAX_NUM_CPU_DEVICES") if coordinator_address else None
    )
    if local_device_count:
        # CPU devices for local multi-process runs (tests; debugging a pod config before paying for
        # one).
        jax.config.update("jax_num_cpu_devices", int(local_device_count))
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = coordinator_address is not None or num_processes is not None
    cluster = None if explicit else _cluster_detected()
    if not explicit and cluster is None:
        return
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise ValueError(
            "multi-process launch needs all of --coordinator_address, --num_processes and "
            f"--process_id (got {coordinator_address!r}, {num_processes!r}, {process_id!r})"
        )
    if explicit and int(process_id) != 0:
        # JAX aborts the whole interpreter (C++ CHECK, no Python exception) when the coordinator
        # stays unreachable, so a clear message must come before: wait for its port ourselves,
        # bounded.
        wait_for_coordinator(coordinator_address, timeout)
    where = (
        coordinator_address
        or os.environ.get("JAX_COORDINATOR_ADDRESS")
        or f"auto-detected ({cluster})"
    )
    # Printed, not logged: absl may hide INFO, and a C++ abort below would leave no Python trace.
    print(
        f"[biggan.runtime.distributed] process {process_id if explicit else '(auto)'} of "
        f"{num_processes if explicit else '(auto)'}: joining the JAX coordinator at {where}, timeout "
        f"{int(timeout)} s (an abort with DEADLINE_EXCEEDED below means some process did not join in time)",
        file=sys.stderr,
        flush=True,
    )
    try:
        if explicit:
            jax.distributed.initialize(
                coordinator_address,
                int(num_processes),
                int(process_id),
                initialization_timeout=int(timeout),
            )
        else:
            log.info("multi-process environment detected: %s", cluster)
            jax.distributed.initialize(initialization_timeout=int(timeout))
    except Exception as e:  # noqa: BLE001 - re-raised with the address and the fix
        raise RuntimeError(
            f"could not join the JAX coordinator at {where} within {timeout} s "
            f"({type(e).__name__}: {e}). Check that process 0 is running and that the address "
            f"and port are reachable from this host."
        ) from e
    log.info(
        "process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def wait_for_coordinator(address: str, timeout: float, *, poll_s: float = 0.2):
    """Return once `host:port` accepts TCP connections; raise naming the address after `timeout`
    s."""
    host, sep, port = str(address).rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"--coordinator_address={address!r}; expected host:port of process 0, "
            f"e.g. 10.0.0.2:1234 or localhost:1234"
        )
    deadline = time.monotonic() + float(timeout)
    error = None
    while True:
        try:
            with socket.create_connection(
                (host, int(port)), timeout=max(0.1, min(2.0, float(timeout)))
            ):
                return
        except OSError as e:
            error = e
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    raise TimeoutError(
        f"could not reach the JAX coordinator at {address} within {timeout} s "
        f"(last error: {error}). Check that process 0 was started with the same "
        f"--coordinator_address, is still running, and that {address} is reachable from this "
        f"host (firewall, hostname); raise --initialization_timeout if it starts slowly."
    )


def allgather_json(obj) -> list:
    """Every process's JSON-able `obj`, in process order, on every process (a collective: all must
    call)."""
    mine = np.frombuffer(json.dumps(obj, sort_keys=True, default=str).encode(), np.uint8)
    if jax.process_count() == 1:
        return [json.loads(mine.tobytes())]
    return [json.loads(row.tobytes()) for row in _allgather_bytes(mine)]


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (a collective: all must call)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.array([bool(flag)], np.int32))))


def gather_data_state(local_state: dict) -> dict:
    """The input position of every process, to checkpoint (orbax writes JSON from process 0 only).

    Process 0's own fields stay at the top level, so a single-process reader needs nothing new.
    """
    states = allgather_json(local_state)
    return {**states[0], "processes": states}


def local_data_state(saved: dict, process_index: int, process_count: int) -> dict:
    """This process's input position from a checkpointed `gather_data_state` (any process layout).

    Same layout: each process continues exactly where it stopped. Another layout: the processes'
    shards are strided slices of one per-epoch permutation (biggan/data/pipeline.py), so while every
    process is at the same (epoch, offset) the examples consumed are exactly that epoch's first
    P*offset; the new processes continue at offset P*offset/P' — the batches an uninterrupted run
    with the new layout would have seen. Later epochs drift when N is not divisible by P, and the
    position is then approximated from the total consumed (logged).
    """
    states = saved.get("processes") or [{k: v for k, v in saved.items() if k != "processes"}]
    if len(states) == process_count:
        return states[process_index]
    num_examples = int(states[0]["num_examples"])
    positions = {(int(s["epoch"]), int(s["offset"])) for s in states}
    consumed = len(states) * next(iter(positions))[1]
    if len(positions) == 1 and consumed % process_count == 0:
        epoch, offset = next(iter(positions))[0], consumed // process_count
    else:
        shards = [len(range(p, num_examples, len(states))) for p in range(len(states))]
        total = sum(int(s["epoch"]) * n + int(s["offset"]) for s, n in zip(states, shards))
        epoch, offset = divmod(total, num_examples)
        offset //= process_count
        log.warning(
            "input position of %d processes %s mapped approximately onto %d processes: "
            "epoch %d, offset %d (the batches differ slightly from an uninterrupted run)",
            len(states),
            sorted(positions),
            process_count,
            epoch,
            offset,
        )
    shard = len(range(process_index, num_examples, process_count))
    if offset >= shard:
        epoch, offset = epoch + 1, 0
    log.info(
        "input position: %d processes' checkpoint -> process %d of %d at epoch %d, offset %d",
        len(states),
        process_index,
        process_count,
        epoch,
        offset,
    )
    return {
        **states[0],
        "epoch": epoch,
        "offset": offset,
        "process_index": process_index,
        "process_count": process_count,
    }


# ------------------------------------------------------------------------------------------------
# Process-local work gathered in a fixed order (multi-process evaluation, biggan/evaluation/evaluator.py).


def _allgather_bytes(mine: np.ndarray) -> list[np.ndarray]:
    """Every process's uint8 buffer (any length), in process order (a collective: all must call)."""
    lengths = np.ravel(multihost_utils.process_allgather(np.array([mine.size], np.int32)))
    # Padded to a power of two: the gather is compiled once per padded length, not once per call.
    padded = np.zeros(1 << max(int(lengths.max()) - 1, 1).bit_length(), np.uint8)
    padded[: mine.size] = mine
    everyone = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [row[:n] for row, n in zip(everyone, lengths)]


def allgather_arrays(arrays: dict) -> list[dict]:
    """Every process's `{name: numpy array}` (any dtypes, shapes and keys; may be empty), in process
    order, on every process, bit for bit (a collective: all must call).

    Serialised as .npz bytes, so float64 survives (a plain process_allgather runs through JAX, which
    turns float64 into float32 without jax_enable_x64) and processes may send different shapes.
    """
    if jax.process_count() == 1:
        return [dict(arrays)]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    rows = _allgather_bytes(np.frombuffer(buffer.getvalue(), np.uint8))
    out = []
    for row in rows:
        with np.load(io.BytesIO(row.tobytes()), allow_pickle=False) as f:
            out.append({k: f[k] for k in f.files})
    return out


def wait_for_all_processes(name: str, timeout_s: float = 3600.0) -> None:
    """Block until every process reaches `name`, through the coordination service (no device
    collective; no-op for one process). Before a program's first run: its collectives set up their
    CPU (gloo) communicators waiting only 30 s for the slowest process, which a process that
    compiled longer (another load, a compilation-cache miss) would exceed. `name` must be new to the
    job (a barrier is used once)."""
    if jax.process_count() == 1:
        return
    try:
        from jax._src import (
            distributed as jax_distributed,  # the coordination-service client JAX joined
        )

        client = jax_distributed.global_state.client
    except Exception as e:  # noqa: BLE001 - a private API: when it moves, fall back to a device barrier
        log.debug("coordination-service client unavailable: %s", e)
        client = None
    if client is None:
        barrier(name)
        return
    client.wait_at_barrier(name, int(timeout_s * 1000))


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (no-op for one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def deal_chunks(
    num_items: int, batch_size: int, process_count: int
) -> list[list[tuple[int, int] | None]]:
    """Round-robin chunks: chunk k (items k·batch_size onwards, `num` of them) goes to process k mod
    P.

    Returns rounds[r][p] = (start, num) of chunk r·P + p, or None where the chunks ran out (only in
    the last round). Reading the rounds in order, processes in order, gives the chunks in item
    order.
    """
    if num_items < 0 or batch_size < 1 or process_count < 1:
        raise ValueError(
            f"deal_chunks(num_items={num_items}, batch_size={batch_size}, "
            f"process_count={process_count}): expected num_items >= 0, batch_size >= 1 and "
            "process_count >= 1"
        )
    chunks = [
        (start, min(batch_size, num_items - start)) for start in range(0, num_items, batch_size)
    ]
    return [
        [chunks[k] if k < len(chunks) else None for k in range(r, r + process_count)]
        for r in range(0, len(chunks), process_count)
    ]


def chunk_results_in_order(
    compute: Callable[[int, int], dict],
    num_items: int,
    batch_size: int,
    *,
    what: str = "items",
    process_index: int | None = None,
    process_count: int | None = None,
    allgather: Callable[[dict], list[dict]] | None = None,
) -> Iterator[dict]:
    """`compute(start, num) -> {name: numpy array}` of every chunk, yielded in chunk order on every
    process.

    One process: the chunks one after another, computed here. P processes (a collective: all must
    iterate to the end): each round every process computes its chunk of `deal_chunks` (one whose
    chunks ran out sends an empty dict), the results are all-gathered bit for bit and yielded in
    chunk order. An exception in one process's `compute` is raised on every process (none is left
    waiting). `process_index`/`process_count`/`allgather` default to JAX's and `allgather_arrays`.
    """
    process_count = jax.process_count() if process_count is None else process_count
    if process_count == 1:
        for start in range(0, num_items, batch_size):
            yield compute(start, min(batch_size, num_items - start))
        return
    process_index = jax.process_index() if process_index is None else process_index
    allgather = allgather or allgather_arrays
    for row in deal_chunks(num_items, batch_size, process_count):
        mine, local, error = row[process_index], {}, None
        if mine is not None:
            try:
                local = compute(*mine)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others heard of it
                error, local = e, {"__error__": np.str_(f"{type(e).__name__}: {e}")}
        gathered = allgather(local)
        failed = [p for p, g in enumerate(gathered) if "__error__" in g]
        if error is not None:
            raise error
        if failed:
            p = failed[0]
            start, num = row[p]
            raise RuntimeError(
                f"process {p} failed on {what} {start}..{start + num - 1}: "
                f"{gathered[p]['__error__']} (its own output has the traceback)"
            )
        for p, chunk in enumerate(row):
            if chunk is not None:
                yield gathered[p]


def local_mesh():
    """This process's devices as a `data` mesh for a FeatureNetwork (None: all devices, one
    process)."""
    return sharding.make_mesh(jax.local_devices()) if jax.process_count() > 1 else None


def process_zero_first(make: Callable, name: str):
    """`make()` on process 0, then on the others: what process 0 caches on first use (the trained
    digits classifier, reference moments) the others then read instead of writing the same file
    concurrently."""
    if jax.process_index() == 0:
        made = make()
    barrier(f"biggan.runtime.distributed.process_zero_first:{name}")
    if jax.process_index() != 0:
        made = make()
    return made
