r"""Train-step speed: BigGAN-128 (ch 96, batch 8, one D and one G step) and the digits config, ours vs the
author's BigGAN-PyTorch on the same machine in one run.

  python bench/train_step.py --biggan_pytorch /path/to/BigGAN-PyTorch   # side by side (a checkout of
                                                                        # github.com/ajbrock/BigGAN-PyTorch)
  python bench/train_step.py                                            # ours only; ratio vs the issue's 28 s

Each row runs in its own process, one after another, under one host-allocator policy
(biggan/runtime/host_memory.py): `default` = glibc as it comes (how BigGAN-PyTorch runs out of the box), `retain`
= one arena, no mmap, no trimming (what our entry points set on CPU). The allocator changes no value
but decides whether every step page-faults its temporaries afresh, so both implementations are shown
under both policies and each ratio names the pair it compares.

The PyTorch step is its train_fns.py GAN_training_function with our config's settings: hinge loss, Adam
β1 0 β2 0.999 eps 1e-6, 1 D step, no accumulation, `utils.ortho(G, 2·ortho_beta)` without the shared
embedding and the EMA update (their own `ortho` and `ema` code, read from the checkout); torch threads =
CPUs. Prints a table and writes bench/results/train_step.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import in_own_process, report, timeit  # noqa: E402

ISSUE_REFERENCE_S_PER_STEP = 28.0  # issue 3: BigGAN-PyTorch, BigGAN-128 batch 8, this machine
BIGGAN_128 = "configs/biggan_128.py"


def ours(config_spec, batch, repeats):
    import jax
    import numpy as np

    from biggan import config as cfg
    from biggan.train import state as train_state
    from biggan.train import step as ts

    c = cfg.load_config_file(config_spec)
    c.train.update(batch_size=batch, num_d_steps=1, num_accumulations=1)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    step = jax.jit(ts.make_train_step(c, mdl), donate_argnums=0)
    r = c.model.resolution
    rng = np.random.default_rng(0)
    data = {
        "image": rng.integers(0, 256, (1, 1, batch, r, r, 3), dtype=np.uint8),
        "label": rng.integers(0, c.model.num_classes, (1, 1, batch)).astype(np.int32),
    }
    t0 = time.perf_counter()
    compiled = step.lower(state, data, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, jax.random.key(1))
        jax.block_until_ready(metrics)

    return compile_s, timeit(run, repeats=repeats)


def _their_utils(path):
    """`ortho`, `ema` and `toggle_grad` from the checkout's utils.py, without its torchvision
    imports."""
    import torch

    namespace = {"torch": torch}
    with open(os.path.join(path, "utils.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in (
            "ortho",
            "ema",
            "toggle_grad",
        ):
            exec(compile(ast.Module([node], []), "utils.py", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def biggan_pytorch(path, batch, repeats, device="cpu"):
    import copy

    import torch

    from biggan import config as cfg

    torch.set_num_threads(os.cpu_count())
    sys.path.insert(0, path)
    import BigGAN  # noqa: E402 — the author's code, from the given checkout
    import losses

    utils = _their_utils(path)
    t = cfg.load_config_file(BIGGAN_128).train
    G = BigGAN.Generator(
        G_ch=96,
        dim_z=120,
        resolution=128,
        G_attn="64",
        n_classes=1000,
        G_shared=True,
        shared_dim=128,
        hier=True,
        G_lr=1e-4,
        G_B1=0.0,
        G_B2=0.999,
        adam_eps=1e-6,
        SN_eps=1e-6,
        BN_eps=1e-5,
    )
    D = BigGAN.Discriminator(
        D_ch=96,
        resolution=128,
        D_attn="64",
        n_classes=1000,
        D_lr=4e-4,
        D_B1=0.0,
        D_B2=0.999,
        adam_eps=1e-6,
        SN_eps=1e-6,
    )
    G.to(device), D.to(device)  # the optimizers keep the same Parameter objects
    G_ema = copy.deepcopy(G)
    ema = utils.ema(G, G_ema, t.ema_decay, t.ema_start)
    GD = BigGAN.G_D(G, D)
    G.train(), D.train()
    x = torch.rand(batch, 3, 128, 128, device=device) * 2 - 1
    y = torch.randint(0, 1000, (batch,), device=device)
    itr = [0]

    def run():  # train_fns.GAN_training_function, num_D_steps 1, no accumulation
        utils.toggle_grad(D, True), utils.toggle_grad(G, False)
        D.optim.zero_grad()
        z, yz = (
            torch.randn(batch, 120, device=device),
            torch.randint(0, 1000, (batch,), device=device),
        )
        d_fake, d_real = GD(z, yz, x, y, train_G=False)
        l_real, l_fake = losses.loss_hinge_dis(d_fake, d_real)
        (l_real + l_fake).backward()
        D.optim.step()
        utils.toggle_grad(D, False), utils.toggle_grad(G, True)
        G.optim.zero_grad()
        z, yz = (
            torch.randn(batch, 120, device=device),
            torch.randint(0, 1000, (batch,), device=device),
        )
        losses.loss_hinge_gen(GD(z, yz, train_G=True)).backward()
        # Our ortho_penalty(β) has BigGAN-PyTorch's G_ortho = 2β (biggan/gan/regularisers.py
        # docstring).
        utils.ortho(G, 2 * t.ortho_beta, blacklist=list(G.shared.parameters()))
        G.optim.step()
        itr[0] += 1
        ema.update(itr[0])
        if device != "cpu":
            torch.cuda.synchronize()  # the step's kernels are asynchronous

    return timeit(run, repeats=repeats)


def worker(impl, what, path, repeats):
    """One measurement in this process (the allocator policy comes from BIGGAN_HOST_MALLOC)."""
    from biggan.runtime import host_memory

    host_memory.retain_freed_memory()
    if impl == "pytorch":
        return dict(compile_s=0.0, s_per_step=biggan_pytorch(path, 8, repeats))
    compile_s, s = ours(
        BIGGAN_128 if what == "biggan_128" else "configs/digits.py",
        8 if what == "biggan_128" else 32,
        repeats,
    )
    return dict(compile_s=compile_s, s_per_step=s)


def isolated(impl, what, policy, path, repeats):
    print(f"[{impl} {what} malloc={policy}] ...", flush=True)
    return in_own_process(
        __file__,
        ["--_worker", impl, what, "--repeats", str(repeats)]
        + (["--biggan_pytorch", path] if path else []),
        policy,
    )


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--biggan_pytorch", default=os.environ.get("BIGGAN_PYTORCH_DIR"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--_worker", nargs=2, metavar=("IMPL", "WHAT"), help=argparse.SUPPRESS)
    p.add_argument("--_worker_out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        with open(args._worker_out, "w") as f:
            json.dump(worker(*args._worker, args.biggan_pytorch, args.repeats), f)
        return

    model = "BigGAN-128 ch96 b8"
    runs = [("biggan-jax", "retain"), ("biggan-jax", "default")]
    if args.biggan_pytorch:
        runs = [("BigGAN-PyTorch", "default"), ("BigGAN-PyTorch", "retain")] + runs
    measured = {}
    for impl, policy in runs:
        measured[impl, policy] = isolated(
            "pytorch" if impl == "BigGAN-PyTorch" else "ours",
            "biggan_128",
            policy,
            args.biggan_pytorch,
            args.repeats,
        )
    rows = []
    for (impl, policy), m in measured.items():
        row = dict(
            model=model,
            impl=impl,
            malloc=policy,
            compile_s=m["compile_s"],
            s_per_step=m["s_per_step"],
            images_per_s=8 / m["s_per_step"],
        )
        for ref_policy in ("default", "retain"):
            ref = measured.get(("BigGAN-PyTorch", ref_policy))
            row[f"vs_pytorch_{ref_policy}"] = (
                ref["s_per_step"] / m["s_per_step"] if ref else float("nan")
            )
        row["vs_issue_28s"] = ISSUE_REFERENCE_S_PER_STEP / m["s_per_step"]
        rows.append(row)
    m = isolated("ours", "digits", "retain", None, max(args.repeats, 5))
    rows.append(
        dict(
            model="digits ch8 b32",
            impl="biggan-jax",
            malloc="retain",
            compile_s=m["compile_s"],
            s_per_step=m["s_per_step"],
            images_per_s=32 / m["s_per_step"],
            vs_pytorch_default=float("nan"),
            vs_pytorch_retain=float("nan"),
            vs_issue_28s=float("nan"),
        )
    )
    report(
        "train_step",
        rows,
        {
            "reference": "BigGAN-PyTorch, same run, separate processes"
            if args.biggan_pytorch
            else "issue 3 figure (28 s/step)"
        },
    )
    ours_row = rows[[r["impl"] for r in rows].index("biggan-jax")]
    print(
        f"BigGAN-128 images/s ratio, ours (malloc retain, as shipped on CPU) / BigGAN-PyTorch: "
        f"{ours_row['vs_pytorch_default']:.2f}x vs its default malloc, "
        f"{ours_row['vs_pytorch_retain']:.2f}x vs the same retained malloc; {ours_row['vs_issue_28s']:.2f}x vs 28 s"
    )


if __name__ == "__main__":
    main()
