r"""The embedded default: a conditional BigGAN at 32×32 on scikit-learn's bundled handwritten digits.

1,797 real labelled 8×8 images (10 classes), upscaled to 32×32; no download. Trains on a 2-core CPU.
Command: python train.py            (same as: python train.py --config configs/digits.py)
Expected: in under 20 minutes on 2 CPU cores, workdirs/digits/samples/step_*.png show one row per class
in which the digit is recognisably the requested class; metrics.jsonl logs the digits-classifier Fréchet
distance and the accuracy with which that classifier recognises the requested class (see BUILD_NOTES).
Smoke run: python train.py --config configs/digits.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    # BigGAN 32² layout (G 4→4→4, D 3→4↓, 4→4↓, 4→4, 4→4) with a small width; skip-z + shared embedding.
    c.model.update(arch="biggan", resolution=32, ch_g=16, ch_d=16, dim_z=32, shared_dim=32, num_classes=10,
                   g_attn=(), d_attn=())
    c.data.update(source="digits", resolution=32)
    # Small-data recipe: lr 2e-4 both (BigGAN-PyTorch CIFAR script), 2 D steps, EMA from step 500.
    c.train.update(batch_size=64, num_d_steps=2, lr_g=2e-4, lr_d=2e-4, ortho_beta=1e-4, ema_decay=0.999,
                   ema_start=500, num_steps=3000)
    c.log.update(log_every=50, sv_every=500, sample_every=500, checkpoint_every=500, keep_checkpoints=2,
                 eval_every=1000, best_metric="")
    c.sample.update(standing_stats_batches=20, standing_stats_batch_size=100)
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c)
    return c
