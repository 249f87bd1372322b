r"""BigGAN at 512×512 on ImageNet (paper appendix B, table 6): dim_z 128 (8×16), attention at 64 in G and D; D from the
paper's table 6 (BigGAN-PyTorch has no 512 D).

Command: python train.py --config configs/biggan_512.py --workdir /shared/runs/biggan_512
Expected: IS 241.5 / FID 11.5 (paper, 512 TPU v3 cores).
Smoke run on a CPU: python train.py --config configs/biggan_512.py:runlocal
Mixed precision (bfloat16 activations, float32 parameters/optimiser/BN statistics): --config configs/biggan_512.py:bf16
"""

from biggan import config as cfg


def get_config(arg=None):
    return cfg.imagenet_config(
        arg, arch="biggan", resolution=512, ch=96, dim_z=128, g_attn=(64,), lr_g=5e-5, lr_d=2e-4
    )
