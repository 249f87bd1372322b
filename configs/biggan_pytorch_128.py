r"""The released BigGAN-PyTorch ImageNet 128² run (its scripts/launch_BigGAN_bs256x8.sh), to continue or fine-tune it.

The paper's 128² model with the recipe of that run: batch 256 × 8 accumulations (2048), one D step per G step,
lr 1e-4 (G) / 4e-4 (D), Adam eps 1e-6, no orthogonal regularisation (G_ortho 0), BN eps 1e-5, SN eps 1e-6, EMA
0.9999 from iteration 20k.

Command: convert its weights folder, then continue it (8×GPU hosts or a TPU slice):
  python -m biggan.convert biggan-pytorch /path/to/weights/BigGAN_I128_hdf5_seed0_Gch96_Dch96_bs256_nDa8_nGa8_Glr1.0e-04_Dlr4.0e-04_Gnlinplace_relu_Dnlinplace_relu_Ginitortho_Dinitortho_Gattn64_Dattn64_Gshared_hier_ema --out /shared/runs/biggan_pytorch_128
  python train.py --config configs/biggan_pytorch_128.py --workdir /shared/runs/biggan_pytorch_128
Expected: the run's log (BigGAN-PyTorch logs/BigGAN_ch96_bs256x8.jsonl) goes on from where it stopped: IS/FID
93.1/9.91 at 138k iterations, its best before collapse.
Fine-tune from it with its D: --config.train.init_from=/shared/runs/biggan_pytorch_128 with a new --workdir.
Smoke run on a CPU: python train.py --config configs/biggan_pytorch_128.py:runlocal
"""

from biggan.convert.biggan_pytorch_run import released_run_config


def get_config(arg=None):
    return released_run_config(arg)
