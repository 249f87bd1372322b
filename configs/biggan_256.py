r"""BigGAN at 256×256 on ImageNet (SPEC §1, §4): ch 96, dim_z 140 (7×20), G attention at 128 (TF Hub), D at 64.

Command: python train.py --config configs/biggan_256.py --workdir /shared/runs/biggan_256
Expected: IS 232.5 / FID 8.1 (paper, 256 TPU v3 cores, 24-48 h).
Smoke run on a CPU: python train.py --config configs/biggan_256.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(arch="biggan", resolution=256, ch_g=96, ch_d=96, dim_z=140, g_attn=(128,), d_attn=(64,))
    c.data.update(source="tfds", tfds_name="imagenet2012", resolution=256)
    c.train.update(batch_size=2048, num_d_steps=2, lr_g=5e-5, lr_d=2e-4, ortho_beta=1e-4, ema_decay=0.9999,
                   ema_start=20_000)
    c.log.update(eval_every=2000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c, batch_size=2)
    return c
