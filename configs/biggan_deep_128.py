r"""BigGAN-deep at 128×128 on ImageNet (paper appendix B): ch 128, dim_z 128 unchunked, attention at 64.

Optimiser per the paper's appendix C: lr_g=5e-5, lr_d=2e-4.
Command: python train.py --config configs/biggan_deep_128.py --workdir /shared/runs/biggan_deep_128
Expected: IS/FID better than BigGAN 128 (paper table 2: BigGAN-deep beats BigGAN at every resolution).
Sampling the released weights instead: python -m biggan.convert hf pytorch_model.bin config.json --out DIR,
then python sample.py --checkpoint DIR (see README).
Smoke run on a CPU: python train.py --config configs/biggan_deep_128.py:runlocal
Mixed precision (bfloat16 activations, float32 parameters/optimiser/BN statistics): --config configs/biggan_deep_128.py:bf16
"""

from biggan import config as cfg


def get_config(arg=None):
    return cfg.imagenet_config(
        arg,
        arch="biggan_deep",
        resolution=128,
        ch=128,
        dim_z=128,
        g_attn=(64,),
        lr_g=5e-5,
        lr_d=2e-4,
    )
