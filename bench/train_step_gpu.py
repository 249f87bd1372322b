r"""Train-step speed on one GPU: BigGAN-128 (ch 96, the paper's G and D, float32) at the paper's per-device batch
of 256 (2,048 over 8 devices, table 1 row 8), one D and one G step with orthogonal regularisation and the EMA:
ours vs the author's BigGAN-PyTorch on the same GPU, one process each, one after the other.

  python bench/train_step_gpu.py --biggan_pytorch /path/to/BigGAN-PyTorch   # a checkout of ajbrock/BigGAN-PyTorch

The two steps are those of bench/train_step.py (their train_fns step with their `ortho` and `ema`, on CUDA here).
Both frameworks' defaults for float32 convolutions on this GPU use TF32 tensor cores (cuDNN's allow_tf32, XLA's
default precision); nothing else is tuned. Prints a table and writes bench/results/gpu_train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402  (the two steps)
from common import in_own_process, report  # noqa: E402


def worker(impl, batch, path, repeats):
    if impl == "pytorch":
        import torch

        torch.backends.cudnn.benchmark = True  # BigGAN-PyTorch's train.py sets it too
        return dict(
            compile_s=0.0,
            s_per_step=train_step.biggan_pytorch(path, batch, repeats, device="cuda"),
            device=torch.cuda.get_device_name(),
        )
    import jax

    compile_s, s = train_step.ours(train_step.BIGGAN_128, batch, repeats)
    return dict(compile_s=compile_s, s_per_step=s, device=jax.devices()[0].device_kind)


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--biggan_pytorch", default=os.environ.get("BIGGAN_PYTORCH_DIR"), required=False)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--_worker", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--_worker_out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        with open(args._worker_out, "w") as f:
            json.dump(
                worker(args._worker[0], int(args._worker[1]), args.biggan_pytorch, args.repeats), f
            )
        return
    impls = [("biggan-jax", "ours")] + (
        [("BigGAN-PyTorch", "pytorch")] if args.biggan_pytorch else []
    )
    measured = {}
    for name, impl in impls:
        print(f"[{name} batch {args.batch}] ...", flush=True)
        measured[name] = in_own_process(
            __file__,
            ["--_worker", impl, str(args.batch), "--repeats", str(args.repeats)]
            + (["--biggan_pytorch", args.biggan_pytorch] if args.biggan_pytorch else []),
            "default",
        )
    reference = measured.get("BigGAN-PyTorch")
    rows = [
        dict(
            model=f"BigGAN-128 ch96 b{args.batch}",
            impl=name,
            device=m["device"],
            compile_s=m["compile_s"],
            s_per_step=m["s_per_step"],
            images_per_s=args.batch / m["s_per_step"],
            vs_pytorch=reference["s_per_step"] / m["s_per_step"] if reference else float("nan"),
        )
        for name, m in measured.items()
    ]
    report(
        "gpu_train_step",
        rows,
        {"reference": "BigGAN-PyTorch, same GPU, same run, separate processes"},
    )


if __name__ == "__main__":
    main()
