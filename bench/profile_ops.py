r"""Where the time goes: one jitted call traced with jax.profiler, its XLA ops summed by kind.

  python bench/profile_ops.py train_step     # BigGAN-128 ch96, batch 8, one D and one G step
  python bench/profile_ops.py sample         # BigGAN-deep-128 eval forward, batch 8 and 32 (s/image)
  XLA_FLAGS=--xla_cpu_use_onednn=true python bench/profile_ops.py sample    # the same under an XLA flag

Prints the wall time of the profiled call, op-seconds per kind of XLA op (`ynn_fusion` = XNNPACK/YNNPACK
convolutions and matmuls on CPU) and the largest single ops with their HLO; writes
bench/results/profile_<what>.json. Op-seconds add up the time of ops that ran concurrently, so their sum
can exceed the wall time. Also counts the call's minor page faults (getrusage). Runs under the host-allocator
policy of our entry points (biggan/runtime/host_memory.py); `BIGGAN_HOST_MALLOC=default python bench/profile_ops.py ...`
runs under glibc's own and writes bench/results/profile_<what>_malloc_default.json instead.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import resource
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

_NOT_OPS = ("ThunkExecutor", "$", "SlinkyThreadPool")


def profile_call(fn, *args):
    """(wall seconds of fn(*args), {op name: seconds}, minor page faults) for one call after a
    warm-up call."""
    from jax._src.lib import _profile_data  # reads the xplane.pb that jax.profiler writes

    jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall = time.perf_counter() - t
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        jax.profiler.stop_trace()
        path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
        data = _profile_data.ProfileData.from_file(path)
    ops = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if not event.name.startswith(_NOT_OPS):
                    ops[event.name] += event.duration_ns / 1e9
    return wall, ops, faults


def summarise(label, compiled, wall, ops, faults, images, top=8):
    kinds = collections.Counter()
    for name, seconds in ops.items():
        kinds[name.split(".")[0]] += seconds
    hlo = compiled.as_text()
    print(
        f"\n{label}: {wall:.3f} s wall ({wall / images:.4f} s/image), {sum(ops.values()):.2f} op-seconds, "
        f"{faults} minor page faults"
    )
    for kind, seconds in kinds.most_common(6):
        print(f"  {seconds:8.3f}  {kind}")
    print("  largest ops:")
    for name, seconds in ops.most_common(top):
        match = re.search(r"\n\s*%?" + re.escape(name) + r" = ([^\n]{0,160})", hlo)
        print(f"  {seconds:8.3f}  {name}  {match.group(1) if match else ''}")
    return dict(
        what=label,
        wall_s=wall,
        s_per_image=wall / images,
        op_seconds=sum(ops.values()),
        page_faults=faults,
        ynn_fusion_op_seconds=kinds.get("ynn_fusion", 0.0),
        largest_op=ops.most_common(1)[0][0],
        largest_op_seconds=ops.most_common(1)[0][1],
    )


def train_step_rows():
    from biggan import config as cfg
    from biggan.train import state as train_state
    from biggan.train import step as ts

    c = cfg.load_config_file("configs/biggan_128.py")
    c.train.update(batch_size=8, num_d_steps=1, num_accumulations=1)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (1, 1, 8, 128, 128, 3), dtype=np.uint8),
        "label": rng.integers(0, 1000, (1, 1, 8)).astype(np.int32),
    }
    compiled = jax.jit(ts.make_train_step(c, mdl)).lower(state, batch, jax.random.key(0)).compile()
    return [
        summarise(
            "BigGAN-128 ch96 train step, batch 8",
            compiled,
            *profile_call(compiled, state, batch, jax.random.key(1)),
            8,
        )
    ]


def sample_rows():
    from flax import nnx

    from biggan import config as cfg
    from biggan.models import factory as models

    c = cfg.load_config_file("configs/biggan_deep_128.py")
    graphdef, state = nnx.split(models.make_generator(c.model, nnx.Rngs(0)))
    forward = jax.jit(lambda s, z, y: nnx.merge(graphdef, s, copy=True)(z, y, train=False))
    rows = []
    for batch in (8, 32):
        z = (
            np.random.default_rng(0).standard_normal((batch, c.model.dim_z)).astype(np.float32)
            * 0.4
        )
        y = np.arange(batch, dtype=np.int32)
        compiled = forward.lower(state, z, y).compile()
        rows.append(
            summarise(
                f"BigGAN-deep-128 forward, batch {batch}",
                compiled,
                *profile_call(compiled, state, z, y),
                batch,
            )
        )
    return rows


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["train_step", "sample"])
    args = p.parse_args()
    from biggan.runtime import host_memory

    # the CPU policy of our entry points (BIGGAN_HOST_MALLOC overrides)
    host_memory.retain_freed_memory()
    rows = train_step_rows() if args.what == "train_step" else sample_rows()
    print()
    policy = os.environ.get("BIGGAN_HOST_MALLOC", "auto")
    report(
        f"profile_{args.what}" + ("_malloc_default" if policy == "default" else ""),
        rows,
        {"xla_flags": os.environ.get("XLA_FLAGS", ""), "host_malloc": policy},
    )


if __name__ == "__main__":
    main()
