"""The author's BigGAN-PyTorch (github.com/ajbrock/BigGAN-PyTorch at 98459431, MIT licence),
imported from its verbatim copy in tests/third_party/biggan_pytorch/: its G and D, `utils.ema`,
`utils.save_weights` and `train_fns.GAN_training_function`. Its utils.py and train_fns.py import
torchvision and its data modules at the top but the functions used here never touch them, so those
imports are stubbed while it loads.

`run(...)` trains a small BigGAN-PyTorch model for a few iterations with its own training function
on random data and writes its weights folder as utils.save_weights does: a folder to convert, with
non-trivial Adam states, EMA and SN vectors.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
import types

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent / "third_party" / "biggan_pytorch"
STUBBED = ("torchvision", "torchvision.transforms", "datasets", "animal_hash")
ITS_MODULES = ("BigGAN", "layers", "losses", "train_fns", "utils", "sync_batchnorm")


def _stub(name):
    module = types.ModuleType(name)

    def attribute(attr):  # any class the module-level code names (e.g. dset.ImageFolder)
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})

    module.__getattr__ = attribute
    return module


@contextlib.contextmanager
def imported():
    """(BigGAN, utils, train_fns) of the author's code; sys.path and sys.modules are restored
    after."""
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in ITS_MODULES + STUBBED}
    sys.modules.update({name: _stub(name) for name in STUBBED})
    sys.path.insert(0, str(HERE))
    try:
        import BigGAN
        import train_fns
        import utils

        yield BigGAN, utils, train_fns
    finally:
        sys.path.remove(str(HERE))
        for name in [n for n in sys.modules if n.split(".")[0] in ITS_MODULES + STUBBED]:
            del sys.modules[name]
        sys.modules.update(saved)


def its_config(config, batch_size: int) -> dict:
    """BigGAN-PyTorch's keyword arguments (its utils.prepare_parser names) for our `config`."""
    m, t = config.model, config.train
    return dict(
        G_ch=m.ch_g, D_ch=m.ch_d, dim_z=m.dim_z, resolution=m.resolution, n_classes=m.num_classes,
        G_attn="_".join(map(str, m.g_attn)) or "0", D_attn="_".join(map(str, m.d_attn)) or "0",
        G_shared=m.shared, shared_dim=m.shared_dim, hier=m.hier, BN_eps=m.bn_eps, SN_eps=m.sn_eps,
        G_lr=t.lr_g, D_lr=t.lr_d, G_B1=t.beta1_g, D_B1=t.beta1_d, G_B2=t.beta2, D_B2=t.beta2,
        adam_eps=t.adam_eps, num_G_SVs=1, num_D_SVs=1, num_G_SV_itrs=1, num_D_SV_itrs=1,
        G_init="ortho", D_init="ortho",
        # train_fns.GAN_training_function's keys; G_ortho = 2β: utils.ortho adds
        # strength·2(WWᵀ⊙(1−I))W, the exact gradient of β‖WWᵀ⊙(1−I)‖² is 4β(WWᵀ⊙(1−I))W
        # (biggan/gan/regularisers.py).
        batch_size=batch_size, num_D_steps=t.num_d_steps, num_D_accumulations=t.num_accumulations,
        num_G_accumulations=t.num_accumulations, toggle_grads=True, split_D=False, D_ortho=0.0,
        G_ortho=2 * t.ortho_beta, ema=True, ema_decay=t.ema_decay,
        # utils.ema applies the decay from itr = ema_start, ours from step ema_start + 1
        ema_start=t.ema_start + 1,
    )  # fmt: skip


class Run:
    """A BigGAN-PyTorch run in memory: G, D, G_ema, its ema, z_/y_ and its training function."""

    def __init__(self, modules, config, batch_size: int, seed: int = 0):
        import torch

        BigGAN, utils, train_fns = modules
        self.torch, self.utils = torch, utils
        torch.manual_seed(seed)
        self.kw = kw = its_config(config, batch_size)
        self.G = BigGAN.Generator(**kw)
        self.D = BigGAN.Discriminator(**kw)
        self.G_ema = BigGAN.Generator(**dict(kw, skip_init=True, no_optim=True))
        self.ema = utils.ema(self.G, self.G_ema, kw["ema_decay"], kw["ema_start"])
        self.GD = BigGAN.G_D(self.G, self.D)
        self.z_, self.y_ = utils.prepare_z_y(batch_size, kw["dim_z"], kw["n_classes"], device="cpu")
        self.state_dict = {"itr": 0, "epoch": 0, "save_num": 0, "save_best_num": 0,
                           "best_IS": 0, "best_FID": 999999, "config": kw}  # fmt: skip
        self.train = train_fns.GAN_training_function(
            self.G, self.D, self.GD, self.z_, self.y_, self.ema, self.state_dict, kw
        )

    def feed_latents(self, zs, ys):
        """Make z_.sample_() and y_.sample_() return these arrays in turn (our step's draws)."""
        zs, ys = iter(list(zs)), iter(list(ys))
        torch = self.torch
        self.z_.sample_ = lambda: self.z_.data.copy_(torch.as_tensor(np.asarray(next(zs))))
        self.y_.sample_ = lambda: self.y_.data.copy_(torch.as_tensor(np.asarray(next(ys))))

    def step(self, x_nchw: np.ndarray, y: np.ndarray) -> dict:
        """One iteration as its train.py runs it: itr += 1, then the training function."""
        torch = self.torch
        self.G.train(), self.D.train(), self.G_ema.train()
        self.state_dict["itr"] += 1
        return self.train(torch.as_tensor(x_nchw), torch.as_tensor(y).long())

    def save(self, weights_root: str, name: str) -> pathlib.Path:
        pathlib.Path(weights_root).mkdir(parents=True, exist_ok=True)
        self.utils.save_weights(
            self.G, self.D, self.state_dict, weights_root, name, None, self.G_ema
        )
        return pathlib.Path(weights_root) / name
