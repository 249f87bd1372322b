r"""Sampling speed: biggan-deep-128 at batch 8 and 32, ours against pytorch-pretrained-biggan 0.1.1 in the same
run (the same seeded random weights, converted by biggan.convert; torch threads = CPUs).

  python bench/sample.py
Prints a table and the ratios; writes bench/results/sample.json.

Two processes, one per host-allocator policy (biggan/runtime/host_memory.py; see bench/train_step.py): `default`
(glibc as it comes, how pytorch-pretrained-biggan runs) and `retain` (what our entry points set on CPU).
Each times both implementations and checks that their images agree. `ratio` compares the two under the
same policy; `ratio_as_shipped` compares ours under `retain` with PyTorch under `default`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import in_own_process, report, timeit  # noqa: E402


def reference(seed=0):
    """pytorch-pretrained-biggan biggan-deep-128 with random weights and advanced SN vectors
    (tests/convert/test_convert_hf.py explains why)."""
    import pytorch_pretrained_biggan as ppb
    import torch
    from torch.nn.utils.spectral_norm import SpectralNorm

    torch.manual_seed(seed)
    model = ppb.BigGAN(ppb.BigGANConfig())
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        model.train()
        for _ in range(30):  # each SN pre-forward hook call = one training forward's power step
            for module in model.modules():
                for hook in module._forward_pre_hooks.values():
                    if isinstance(hook, SpectralNorm):
                        hook(module, None)
    return model.eval()


def worker(truncation, repeats):
    from biggan.runtime import host_memory

    host_memory.retain_freed_memory()  # policy from BIGGAN_HOST_MALLOC
    import jax
    import torch

    from biggan.convert import hf
    from biggan.sampling import sampler as sampling

    torch.set_num_threads(os.cpu_count())
    model = reference()
    state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
    config, generator, stats = hf.convert_hf(state_dict, model.config.to_dict())
    sampler = sampling.Sampler(config, generator, truncation_stats=stats)
    rows = []
    for batch in (8, 32):
        z = np.asarray(
            sampling.sample_latents(jax.random.key(0), batch, 128, truncation, released=True)
        )
        y = np.zeros((batch, 1000), np.float32)
        y[np.arange(batch), np.arange(batch) * 31 % 1000] = 1
        sampler.generate(z, y, truncation, batch_size=batch)  # compile
        ours = timeit(lambda: sampler.generate(z, y, truncation, batch_size=batch), repeats=repeats)
        with torch.no_grad():
            zt, yt = torch.from_numpy(z), torch.from_numpy(y)
            ref = timeit(lambda: model(zt, yt, truncation), repeats=repeats)
            diff = float(
                np.abs(
                    model(zt, yt, truncation).permute(0, 2, 3, 1).numpy()
                    - sampler.generate(z, y, truncation, batch_size=batch)
                ).max()
            )
        rows.append(
            dict(
                batch=batch,
                ours_images_per_s=batch / ours,
                pytorch_images_per_s=batch / ref,
                ratio=ref / ours,
                max_abs_diff=diff,
            )
        )
    return rows


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--truncation", type=float, default=0.4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--_worker_out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker_out:
        with open(args._worker_out, "w") as f:
            json.dump(worker(args.truncation, args.repeats), f)
        return
    by_policy = {}
    for policy in ("default", "retain"):
        print(f"[malloc={policy}] ...", flush=True)
        by_policy[policy] = in_own_process(
            __file__, ["--truncation", str(args.truncation), "--repeats", str(args.repeats)], policy
        )
    rows = []
    for policy, measured in by_policy.items():
        for r in measured:
            shipped = next(d for d in by_policy["default"] if d["batch"] == r["batch"])
            rows.append(
                dict(
                    malloc=policy,
                    **r,
                    ratio_as_shipped=(
                        r["ours_images_per_s"] / shipped["pytorch_images_per_s"]
                        if policy == "retain"
                        else float("nan")
                    ),
                )
            )
    report(
        "sample", rows, {"model": "biggan-deep-128 (random weights)", "truncation": args.truncation}
    )
    for r in rows:
        line = f"batch {r['batch']}, malloc {r['malloc']}: ours/pytorch-pretrained-biggan images/s = {r['ratio']:.2f}x"
        if r["malloc"] == "retain":
            line += f"; as shipped (ours retain / PyTorch default) = {r['ratio_as_shipped']:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
