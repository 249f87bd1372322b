r"""The training loop's overhead: time per step of the loop over the bare jitted step, on the digits config.

  python bench/loop_overhead.py                 # configs/digits.py, logging every 50 steps
  python bench/loop_overhead.py --steps 100 --log_every 25

Rows, in one process, one after another:
- `bare`: the jitted train step (with the loop's on-device non-finite guard) on one batch already on the
  devices, `--steps` calls, one wait at the end: what the devices cost.
- `before`: the loop as it was: after each step, build the next batch (stack the local batches, place them
  on the mesh) and read `all_finite` on the host (bool), so host and devices take turns.
- `after`: biggan.train.loop.train itself (global batches prefetched on a thread, no host read except every
  `--log_every` steps; no checkpoint/sample/eval until the end): seconds per step from its own log
  windows, the first window (compilation) left out.
Goal: after/bare <= 1.05. Prints a table and writes bench/results/loop_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from common import report  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs/digits.py"))
    parser.add_argument("--steps", type=int, default=100, help="timed steps of bare and before")
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument(
        "--windows", type=int, default=3, help="log windows of `after` (the first is dropped)"
    )
    args = parser.parse_args()

    from biggan.runtime import host_memory

    host_memory.retain_freed_memory()  # as train.py does
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from biggan import config as cfg
    from biggan.data import make_pipeline
    from biggan.runtime import sharding
    from biggan.techniques.base import micro_batch_size
    from biggan.train import loop as trainer
    from biggan.train import state as train_state
    from biggan.train import step as ts

    config = cfg.load_config_file(args.config)
    t = config.train
    mesh = sharding.make_mesh()
    mdl, state = train_state.init_state(config, jax.random.key(0))
    state = sharding.replicate(state, mesh)
    batch_sharding = NamedSharding(mesh, P(None, None, sharding.DATA_AXIS))
    pipeline = make_pipeline(config.data, local_batch_size=micro_batch_size(t), seed=0)

    def next_batch():
        local = [next(pipeline) for _ in range(t.num_d_steps * t.num_accumulations)]
        batch = {
            k: np.stack([b[k] for b in local]).reshape(
                (t.num_d_steps, t.num_accumulations) + local[0][k].shape
            )
            for k in ("image", "label")
        }
        return {
            k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in batch.items()
        }

    # bare: the loop's own step function, one resident batch.
    guarded = trainer._jit_step(config, mdl, mesh)
    first_nonfinite = jax.device_put(np.int32(-1), sharding.replicated(mesh))
    batch = next_batch()
    for i in range(3):  # compile + warm up
        state, first_nonfinite, metrics = guarded(state, first_nonfinite, batch, jax.random.key(i))
    jax.block_until_ready(metrics)
    tic = time.perf_counter()
    for i in range(args.steps):
        state, first_nonfinite, metrics = guarded(state, first_nonfinite, batch, jax.random.key(i))
    jax.block_until_ready((state, metrics))
    bare = (time.perf_counter() - tic) / args.steps

    # before: the previous loop's steady state (batch built after each step, one host read per
    # step).
    step_fn = jax.jit(ts.make_train_step(config, mdl, mesh), donate_argnums=0)
    for i in range(3):
        state, metrics = step_fn(state, next_batch(), jax.random.key(i))
        bool(metrics["all_finite"])
    tic = time.perf_counter()
    for i in range(args.steps):
        state, metrics = step_fn(state, next_batch(), jax.random.key(i))
        bool(metrics["all_finite"])
    before = (time.perf_counter() - tic) / args.steps
    pipeline.close()
    del state, metrics

    # after: the trainer, its own timing per log window.
    with tempfile.TemporaryDirectory() as workdir:
        config.train.num_steps = args.windows * args.log_every
        config.log.update(
            log_every=args.log_every,
            sv_every=0,
            sample_every=0,
            eval_every=0,
            checkpoint_every=10**9,
        )
        trainer.train(config, workdir, progress=False)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            windows = [json.loads(line) for line in f if '"images_per_sec"' in line]
    images_per_step = t.num_d_steps * t.batch_size
    after_windows = [images_per_step / w["images_per_sec"] for w in windows[1:]]
    after = sum(after_windows) / len(after_windows)

    rows = [
        {"loop": "bare jitted step", "s_per_step": bare, "ratio_to_bare": 1.0},
        {
            "loop": "before (sync batch + host read per step)",
            "s_per_step": before,
            "ratio_to_bare": before / bare,
        },
        {
            "loop": "after (biggan.train.loop.train)",
            "s_per_step": after,
            "ratio_to_bare": after / bare,
        },
    ]
    report(
        "loop_overhead",
        rows,
        extra={
            "command": "python bench/loop_overhead.py " + " ".join(sys.argv[1:]),
            "config": os.path.relpath(args.config, REPO),
            "batch_size": t.batch_size,
            "num_d_steps": t.num_d_steps,
            "devices": jax.device_count(),
            "steps": args.steps,
            "log_every": args.log_every,
            "after_windows_s_per_step": after_windows,
            "goal_after_over_bare": 1.05,
        },
    )


if __name__ == "__main__":
    main()
