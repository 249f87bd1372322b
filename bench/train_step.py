r"""Train-step speed: BigGAN-128 (ch 96, batch 8, one D and one G step) and the digits config, ours vs the
author's BigGAN-PyTorch in the same run.

  python bench/train_step.py --biggan_pytorch /path/to/BigGAN-PyTorch   # side by side (a checkout of
                                                                        # github.com/ajbrock/BigGAN-PyTorch)
  python bench/train_step.py                                            # ours only; ratio vs the issue's 28 s

Prints a table and writes bench/results/train_step.json. The PyTorch step mirrors its train_fns.py
(hinge loss, Adam β1 0 β2 0.999 eps 1e-6, lr 1e-4/4e-4, 1 D step, no accumulation), torch threads = CPUs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report, timeit  # noqa: E402

ISSUE_REFERENCE_S_PER_STEP = 28.0  # issue 3: BigGAN-PyTorch, BigGAN-128 batch 8, this machine


def ours(config_spec, batch, repeats):
    from biggan import config as cfg, train_step as ts
    c = cfg.load_config_file(config_spec)
    c.train.update(batch_size=batch, num_d_steps=1, num_accumulations=1)
    mdl, state = ts.init_state(c, jax.random.key(0))
    step = jax.jit(ts.make_train_step(c, mdl), donate_argnums=0)
    r = c.model.resolution
    rng = np.random.default_rng(0)
    data = {"image": rng.integers(0, 256, (1, 1, batch, r, r, 3), dtype=np.uint8),
            "label": rng.integers(0, c.model.num_classes, (1, 1, batch)).astype(np.int32)}
    t0 = time.perf_counter()
    compiled = step.lower(state, data, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, jax.random.key(1))
        jax.block_until_ready(metrics)
    return compile_s, timeit(run, repeats=repeats)


def biggan_pytorch(path, batch, repeats):
    import torch
    torch.set_num_threads(os.cpu_count())
    sys.path.insert(0, path)
    import BigGAN  # noqa: the author's code, from the given checkout
    import losses
    G = BigGAN.Generator(G_ch=96, dim_z=120, resolution=128, G_attn="64", n_classes=1000, G_shared=True,
                         shared_dim=128, hier=True, G_lr=1e-4, G_B1=0.0, G_B2=0.999, adam_eps=1e-6, SN_eps=1e-6,
                         BN_eps=1e-5)
    D = BigGAN.Discriminator(D_ch=96, resolution=128, D_attn="64", n_classes=1000, D_lr=4e-4, D_B1=0.0,
                             D_B2=0.999, adam_eps=1e-6, SN_eps=1e-6)
    GD = BigGAN.G_D(G, D)
    G.train(), D.train()
    x = torch.rand(batch, 3, 128, 128) * 2 - 1
    y = torch.randint(0, 1000, (batch,))

    def run():
        D.optim.zero_grad()
        z, yz = torch.randn(batch, 120), torch.randint(0, 1000, (batch,))
        d_fake, d_real = GD(z, yz, x, y, train_G=False)
        l_real, l_fake = losses.loss_hinge_dis(d_fake, d_real)
        (l_real + l_fake).backward()
        D.optim.step()
        G.optim.zero_grad()
        z, yz = torch.randn(batch, 120), torch.randint(0, 1000, (batch,))
        losses.loss_hinge_gen(GD(z, yz, train_G=True)).backward()
        G.optim.step()
    return timeit(run, repeats=repeats)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--biggan_pytorch", default=os.environ.get("BIGGAN_PYTORCH_DIR"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rows = []
    compile_s, s = ours("configs/biggan_128.py", 8, args.repeats)
    ref_s, ref_src = ISSUE_REFERENCE_S_PER_STEP, "issue 3 figure (28 s/step)"
    if args.biggan_pytorch:
        ref_s, ref_src = biggan_pytorch(args.biggan_pytorch, 8, args.repeats), "BigGAN-PyTorch, same run"
        rows.append(dict(model="BigGAN-128 ch96 b8", impl="BigGAN-PyTorch", compile_s=0.0, s_per_step=ref_s,
                         images_per_s=8 / ref_s, speedup=1.0))
    rows.append(dict(model="BigGAN-128 ch96 b8", impl="biggan-jax", compile_s=compile_s, s_per_step=s,
                     images_per_s=8 / s, speedup=ref_s / s))
    compile_s, s = ours("configs/digits.py", 32, max(args.repeats, 5))
    rows.append(dict(model="digits ch8 b32", impl="biggan-jax", compile_s=compile_s, s_per_step=s,
                     images_per_s=32 / s, speedup=float("nan")))
    report("train_step", rows, {"reference": ref_src, "devices": str(jax.devices())})
    print(f"BigGAN-128 images/s ratio (ours / reference, {ref_src}): {rows[-2]['speedup']:.2f}x")


if __name__ == "__main__":
    main()
