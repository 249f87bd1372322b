r"""BigGAN on CIFAR-10 32×32, the paper's appendix C.2 setup.

Architecture: G 4→4→4 ×ch, D 3→4 (down), 4→4 (down), 4→4, 4→4, ch 64; skip-z as in the paper's row-8 setup
(4 chunks of 32 of dim_z 128), shared embedding; no attention (BigGAN-PyTorch's CIFAR script: attn '0').
Training as BigGAN-PyTorch's launch_cifar_ema.sh: batch 50, 4 D steps per G step, lr 2e-4 both, EMA from 1k.
Command: python train.py --config configs/cifar10.py --workdir runs/cifar10
Expected: IS 9.22 / FID 14.73 without truncation (paper, appendix C.2; 500 epochs).
Smoke run on a CPU: python train.py --config configs/cifar10.py:runlocal
"""
from biggan import config as cfg


def get_config(arg=None):
    c = cfg.base_config()
    c.model.update(arch="biggan", resolution=32, ch_g=64, ch_d=64, dim_z=128, num_classes=10, g_attn=(),
                   d_attn=())
    c.data.update(source="tfds", tfds_name="cifar10", resolution=32)
    c.train.update(batch_size=50, num_d_steps=4, lr_g=2e-4, lr_d=2e-4, ortho_beta=1e-4, ema_decay=0.9999,
                   ema_start=1000, num_steps=500 * 50_000 // 50)
    c.log.update(eval_every=5000, best_metric="fid")
    if arg == "runlocal":
        cfg.shrink_for_smoke_run(c)
    return c
