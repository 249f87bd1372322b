"""Multi-process start-up: `jax.distributed.initialize()` from flags or the cluster's environment.

One JAX process per host (TPU pod slice, Slurm, Open MPI, Kubernetes) or several on one machine with CPU
devices (scripts/launch_local.py). Every process must run the same config: `check_same_config` compares
them at start-up and names the keys that differ.
"""
from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np

log = logging.getLogger(__name__)

# Environment variables that mean "this process is one of several that JAX can discover by itself".
_CLUSTER_HINTS = {"SLURM_NTASKS": "Slurm", "OMPI_COMM_WORLD_SIZE": "Open MPI", "TPU_WORKER_HOSTNAMES": "TPU pod",
                  "JAX_COORDINATOR_ADDRESS": "JAX_COORDINATOR_ADDRESS"}


def _cluster_detected() -> str | None:
    for var, name in _CLUSTER_HINTS.items():
        value = os.environ.get(var, "")
        if var == "TPU_WORKER_HOSTNAMES" and "," not in value:
            continue
        if var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE") and (not value.isdigit() or int(value) < 2):
            continue
        if value:
            return name
    return None


def initialize(coordinator_address=None, num_processes=None, process_id=None, *, local_device_count=None,
               timeout=120):
    """Start JAX's distributed runtime when asked (flags) or when a cluster is detected; else no-op."""
    if local_device_count:
        # CPU devices for local multi-process runs (tests; debugging a pod config before paying for one).
        jax.config.update("jax_num_cpu_devices", int(local_device_count))
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = coordinator_address is not None or num_processes is not None
    cluster = None if explicit else _cluster_detected()
    if not explicit and cluster is None:
        return
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise ValueError("multi-process launch needs all of --coordinator_address, --num_processes and "
                         f"--process_id (got {coordinator_address!r}, {num_processes!r}, {process_id!r})")
    try:
        if explicit:
            jax.distributed.initialize(coordinator_address, int(num_processes), int(process_id),
                                       initialization_timeout=int(timeout))
        else:
            log.info("multi-process environment detected: %s", cluster)
            jax.distributed.initialize(initialization_timeout=int(timeout))
    except Exception as e:  # noqa: BLE001 - re-raised with the address and the fix
        where = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or f"auto-detected ({cluster})"
        raise RuntimeError(f"could not join the JAX coordinator at {where} within {timeout} s "
                           f"({type(e).__name__}: {e}). Check that process 0 is running and that the address "
                           f"and port are reachable from this host.") from e
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_config(config):
    """Refuse to train when processes were started with different configs, naming the differing keys."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils
    mine = json.dumps(config.to_dict(), sort_keys=True, default=str).encode()
    lengths = multihost_utils.process_allgather(np.array([len(mine)], np.int32))
    padded = np.zeros(int(np.max(lengths)), np.uint8)
    padded[:len(mine)] = np.frombuffer(mine, np.uint8)
    reference = multihost_utils.broadcast_one_to_all(padded)
    reference = bytes(np.asarray(reference)[:int(np.ravel(lengths)[0])]).decode()
    if reference != mine.decode():
        ref, own = _flatten(json.loads(reference)), _flatten(json.loads(mine))
        diff = sorted(k for k in set(ref) | set(own) if ref.get(k) != own.get(k))
        raise ValueError(f"process {jax.process_index()} was started with a config that differs from process 0's "
                         f"in: " + ", ".join(f"{k} ({own.get(k)!r} here, {ref.get(k)!r} on process 0)" for k in diff)
                         + ". Start every process with the same config and overrides.")
