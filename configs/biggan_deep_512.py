r"""BigGAN-deep at 512×512 on ImageNet (paper appendix B; ch 128, dim_z 128 unchunked, attention at 64) with
appendix C's learning rate of 2.5e-5 for both G and D.

Command: python train.py --config configs/biggan_deep_512.py --workdir /shared/runs/biggan_deep_512
Expected: IS/FID better than BigGAN 512 (paper table 2). Released weights: see configs/biggan_deep_128.py.
Smoke run on a CPU: python train.py --config configs/biggan_deep_512.py:runlocal
Mixed precision (bfloat16 activations, float32 parameters/optimiser/BN statistics): --config configs/biggan_deep_512.py:bf16
"""

from biggan import config as cfg


def get_config(arg=None):
    return cfg.imagenet_config(
        arg,
        arch="biggan_deep",
        resolution=512,
        ch=128,
        dim_z=128,
        g_attn=(64,),
        lr_g=2.5e-5,
        lr_d=2.5e-5,
    )
