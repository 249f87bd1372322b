r"""BigGAN on CIFAR-10 32×32, the paper's appendix C.2 setup.

Architecture: G 4→4→4 ×ch, D 3→4 (down), 4→4 (down), 4→4, 4→4, ch 64; skip-z as in the paper's row-8 setup
(4 chunks of 32 of dim_z 128), shared embedding; no attention (BigGAN-PyTorch's CIFAR script: attn '0').
Schedule as BigGAN-PyTorch's scripts/launch_cifar_ema.sh: batch 50, 4 D steps per G step, lr 2e-4 both, G EMA
0.9999 from step 1000, 500 epochs. Its epoch is a pass of D's data: each G step consumes num_d_steps × batch =
200 images (train.py: D_batch_size = batch_size × num_D_steps), so 500 epochs = 500 × 50,000 / 200 = 125,000 steps.
Differences from launch_cifar_ema.sh (which keeps BigGAN-PyTorch's defaults for everything it does not set):
  - skip-z and the shared class embedding (its defaults: no --hier, no --G_shared): the paper's row-8 G;
  - orthogonal regularisation β 1e-4 and orthogonal init (it: --G_ortho 0.0, --G_init/--D_init N02): the paper's
    recipe (§3.1, appendix C), and N(0, 0.02) init is not an option of our models;
  - BN eps 1e-4, SN eps 1e-4, Adam eps 1e-6 (its defaults 1e-5, 1e-8, 1e-8): the paper's appendix C values;
  - evaluation every 5,000 steps on FID (it: IS/FID every 5,000 with --num_best_copies 5 by IS) and checkpoints
    by the config's log section (it: --save_every 2000, 2 copies); its --seed 0 is our default seed.
Command: python train.py --config configs/cifar10.py --workdir runs/cifar10
Expected: IS 9.22 / FID 14.73 without truncation (paper, appendix C.2; 500 epochs).
Smoke run on a CPU: python train.py --config configs/cifar10.py:runlocal
"""

from biggan import config as cfg

EPOCHS, TRAIN_IMAGES = 500, 50_000  # launch_cifar_ema.sh --num_epochs; CIFAR-10's training split


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(
        arch="biggan",
        resolution=32,
        ch_g=64,
        ch_d=64,
        dim_z=128,
        num_classes=10,
        g_attn=(),
        d_attn=(),
    )
    c.data.update(source="tfds", tfds_name="cifar10", resolution=32)
    # D images per G step: 4 × 50
    c.train.update(
        batch_size=50,
        num_d_steps=4,
        lr_g=2e-4,
        lr_d=2e-4,
        ortho_beta=1e-4,
        ema_decay=0.9999,
        ema_start=1000,
        num_steps=EPOCHS * TRAIN_IMAGES // (4 * 50),
    )
    c.log.update(eval_every=5000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c)
    return c
