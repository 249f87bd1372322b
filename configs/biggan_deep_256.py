r"""BigGAN-deep at 256×256 on ImageNet (SPEC §2): ch 128, dim_z 128 unchunked, attention at 64.

Optimiser per the paper's appendix C: lr_g=2.5e-5, lr_d=2.5e-5 (SPEC §2).
Command: python train.py --config configs/biggan_deep_256.py --workdir /shared/runs/biggan_deep_256
Expected: IS/FID better than BigGAN 256 (paper table 4).
Sampling the released weights instead: python -m biggan.convert hf pytorch_model.bin config.json --out DIR,
then python sample.py --checkpoint DIR (see README).
Smoke run on a CPU: python train.py --config configs/biggan_deep_256.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(arch="biggan_deep", resolution=256, ch_g=128, ch_d=128, dim_z=128, g_attn=(64,), d_attn=(64,))
    c.data.update(source="tfds", tfds_name="imagenet2012", resolution=256)
    c.train.update(batch_size=2048, num_d_steps=2, lr_g=2.5e-5, lr_d=2.5e-5, ortho_beta=1e-4, ema_decay=0.9999, ema_start=20_000)
    c.log.update(eval_every=2000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c, batch_size=2)
    return c
