r"""BigGAN at 256×256 on ImageNet (paper appendix B, table 5): ch 96, dim_z 140 (7×20), G attention at 128 (TF Hub), D at 64.

Command: python train.py --config configs/biggan_256.py --workdir /shared/runs/biggan_256
Expected: IS 232.5 / FID 8.1 (paper, 256 TPU v3 cores, 24-48 h).
Smoke run on a CPU: python train.py --config configs/biggan_256.py:runlocal
Mixed precision (bfloat16 activations, float32 parameters/optimiser/BN statistics): --config configs/biggan_256.py:bf16
"""

from biggan import config as cfg


def get_config(arg=None):
    return cfg.imagenet_config(
        arg, arch="biggan", resolution=256, ch=96, dim_z=140, g_attn=(128,), lr_g=5e-5, lr_d=2e-4
    )
