r"""BigGAN at 128×128 on ImageNet: the paper's table 1 row 8 (architecture: appendix B, table 4).

Command (TPU v3-128 / 8×GPU hosts; see README "Scaling out"):
  python train.py --config configs/biggan_128.py --workdir /shared/runs/biggan_128
Expected: IS 166.5 / FID 7.4 at the best pre-collapse checkpoint (paper, ~150k-200k iterations of
batch 2048; BigGAN-PyTorch's 8×V100 log: IS/FID 93.1/9.91 at 138k its with batch 256×8).
Smoke run on a CPU: python train.py --config configs/biggan_128.py:runlocal
Mixed precision (bfloat16 activations, float32 parameters/optimiser/BN statistics): --config configs/biggan_128.py:bf16
"""

from biggan import config as cfg


def get_config(arg=None):
    return cfg.imagenet_config(
        arg,
        **cfg.BIGGAN_128,
        lr_g=5e-5,
        lr_d=2e-4,
        smoke_batch_size=4,
    )
