r"""BigGAN at 128×128 on ImageNet: the paper's table 1 row 8 (SPEC §1, §4).

Command (TPU v3-128 / 8×GPU hosts; see README "Scaling out"):
  python train.py --config configs/biggan_128.py --workdir /shared/runs/biggan_128
Expected: IS 166.5 / FID 7.4 at the best pre-collapse checkpoint (paper, ~150k-200k iterations of
batch 2048; BigGAN-PyTorch's 8×V100 log: IS/FID 93.1/9.91 at 138k its with batch 256×8).
Smoke run on a CPU: python train.py --config configs/biggan_128.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(arch="biggan", resolution=128, ch_g=96, ch_d=96, dim_z=120, g_attn=(64,), d_attn=(64,))
    c.data.update(source="tfds", tfds_name="imagenet2012", resolution=128)
    # Table 1 row 8: batch 2048, 2 D steps, lr 5e-5/2e-4, Adam β1 0 β2 0.999, ortho 1e-4, EMA 0.9999.
    c.train.update(batch_size=2048, num_d_steps=2, lr_g=5e-5, lr_d=2e-4, ortho_beta=1e-4, ema_decay=0.9999,
                   ema_start=20_000, num_steps=250_000)
    c.log.update(eval_every=2000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c)
    return c
