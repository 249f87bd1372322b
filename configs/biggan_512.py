r"""BigGAN at 512×512 on ImageNet (SPEC §1, §4): dim_z 128 (8×16), attention at 64 in G and D; D from the
paper's table 6 (BigGAN-PyTorch has no 512 D).

Command: python train.py --config configs/biggan_512.py --workdir /shared/runs/biggan_512
Expected: IS 241.5 / FID 11.5 (paper, 512 TPU v3 cores).
Smoke run on a CPU: python train.py --config configs/biggan_512.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(arch="biggan", resolution=512, ch_g=96, ch_d=96, dim_z=128, g_attn=(64,), d_attn=(64,))
    c.data.update(source="tfds", tfds_name="imagenet2012", resolution=512)
    c.train.update(batch_size=2048, num_d_steps=2, lr_g=5e-5, lr_d=2e-4, ortho_beta=1e-4, ema_decay=0.9999,
                   ema_start=20_000)
    c.log.update(eval_every=2000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c, batch_size=2)
    return c
