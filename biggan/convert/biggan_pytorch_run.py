"""A BigGAN-PyTorch weights folder, as its `utils.save_weights` writes it (G.pth, G_ema.pth, D.pth,
G_optim.pth, D_optim.pth, state_dict.pth), into a training workdir: `python train.py --workdir
WORKDIR` continues the author's run, `--config.train.init_from=WORKDIR` fine-tunes from it with its
D.

What is mapped: G, D and G_ema's weights (biggan/convert/biggan_pytorch.py's tables), G's and D's SN
vectors and G's BN running statistics, both Adam states (first and second moments through the same
tables, the step count), and the iteration counter (`state_dict['itr']`) as our step. The Adam
hyper-parameters in the optimiser files must equal the config's. G_ema's own buffers (its SN vectors
and BN statistics, which BigGAN-PyTorch's `ema` also averages) are kept in the checkpoint's extras
(`checkpoints.EMA_G_STATE`): sampling the converted step equals the author's G_ema in eval mode;
training continues with our EMA of the parameters alone, sampled with G's state or standing
statistics (biggan/sampling/sampler.py). BigGAN-PyTorch records no input position, so the data
stream of the continued run starts afresh.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx, traverse_util

from biggan import checkpoints
from biggan import config as cfg
from biggan.convert.biggan_pytorch import (
    biggan_pytorch_d_layout,
    biggan_pytorch_kinds,
    biggan_pytorch_layout,
)
from biggan.convert.tables import (
    ConversionError,
    build_discriminator,
    build_generator,
    convert_layout,
    load_torch_state_dict,
)
from biggan.runtime import storage
from biggan.train import state as train_state

FILES = ("G.pth", "G_ema.pth", "D.pth", "G_optim.pth", "D_optim.pth", "state_dict.pth")
# The buffers of BigGAN-PyTorch's layers (SN's u0/sv0, bn/ccbn's running statistics): the rest of a
# state dict, in order, is its module's parameters() — the order its optimiser state is indexed by.
BUFFERS = (".u0", ".sv0", ".stored_mean", ".stored_var")


def released_run_config(arg=None) -> ml_collections.ConfigDict:
    """The released BigGAN-PyTorch ImageNet 128² run (scripts/launch_BigGAN_bs256x8.sh): the paper's
    model, batch 256 × 8 accumulations, one D step per G step, lr 1e-4 / 4e-4, Adam eps 1e-6, no
    orthogonal regularisation (G_ortho 0), BN eps 1e-5, SN eps 1e-6, EMA 0.9999 from iteration 20k.
    `arg` as config.imagenet_config's ("runlocal", "bf16")."""
    return cfg.imagenet_config(
        arg,
        **cfg.BIGGAN_128,
        lr_g=1e-4,
        lr_d=4e-4,
        smoke_batch_size=4,
        recipe={
            "model.bn_eps": 1e-5,
            "model.sn_eps": 1e-6,
            "train.num_accumulations": 8,  # 256 × 8 = the batch of 2048
            "train.num_d_steps": 1,
            "train.adam_eps": 1e-6,
            "train.ortho_beta": 0.0,
            "sample.bn_stats": "stored",  # its sample.py: --G_eval_mode without --accumulate_stats
        },
    )


def check_weights_folder(directory: str) -> None:
    """Refuse a folder that is not a BigGAN-PyTorch weights folder, naming what it is or lacks."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{directory} is not a directory; expected a BigGAN-PyTorch weights folder"
        )
    present = set(os.listdir(directory))
    others = {
        "pytorch_model.bin": "a pytorch-pretrained-biggan model: use `python -m biggan.convert hf`",
        "saved_model.pb": "a TF Hub module: use `python -m biggan.convert tfhub`",
        "checkpoints": "already a training workdir of ours: train on it directly",
        "generator": "already an exported generator of ours",
    }
    for name, what in others.items():
        if name in present:
            raise ConversionError(f"{directory} holds {name}: {what}")
    missing = [name for name in FILES if name not in present]
    if missing:
        hint = (
            " (these files carry a suffix such as _copy0 or _best0: convert that folder's unsuffixed "
            "copy, or rename them)"
            if any(n.startswith("G_") and n.endswith(".pth") and n not in FILES for n in present)
            else ""
        )
        raise ConversionError(
            f"{directory} lacks {', '.join(missing)}; a BigGAN-PyTorch weights folder (utils.save_weights) "
            f"holds {', '.join(FILES)}{hint}"
        )


def load_torch_object(path: str, what: str):
    """An optimiser state dict or state_dict.pth, read safely (weights_only) with tensors as
    numpy."""
    import torch  # lazy: only to read PyTorch files

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(
            f"{path} could not be read ({type(e).__name__}); expected {what} written by torch.save"
        ) from e

    def to_numpy(x):
        if isinstance(x, torch.Tensor):
            return x.detach().to(torch.float32).numpy()
        if isinstance(x, dict):
            return {k: to_numpy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x

    return to_numpy(obj)


def check_adam(
    optimiser: dict, path: str, lr: float, beta1: float, t: ml_collections.ConfigDict, prefix: str
):
    """The optimiser file's Adam hyper-parameters must be the config's (one line naming each
    difference)."""
    groups = optimiser.get("param_groups") if isinstance(optimiser, dict) else None
    if not groups or len(groups) != 1:
        raise ConversionError(
            f"{path}: expected a torch.optim.Adam state dict with one parameter group"
        )
    group = groups[0]
    found = {
        f"train.lr_{prefix}": (group["lr"], lr),
        f"train.beta1_{prefix}": (group["betas"][0], beta1),
        "train.beta2": (group["betas"][1], t.beta2),
        "train.adam_eps": (group["eps"], t.adam_eps),
    }
    wrong = {k: v for k, v in found.items() if not np.isclose(v[0], v[1], rtol=1e-6, atol=0)}
    if group.get("weight_decay", 0) or group.get("amsgrad", False):
        raise ConversionError(f"{path}: weight decay or AMSGrad is on; our Adam has neither")
    if wrong:
        raise ConversionError(
            f"{path} was trained with "
            + ", ".join(f"{k}={a:g}" for k, (a, _) in wrong.items())
            + " but the config has "
            + ", ".join(f"{k}={b:g}" for k, (_, b) in wrong.items())
            + "; pass a config with the run's values (--config, e.g. configs/biggan_pytorch_128.py)"
        )
    return group


def adam_moments(state_dict: dict, optimiser: dict, convert, path: str):
    """(step count, first moments, second moments) as {our param path: array}, through `convert`
    (the weights' table applied to a state dict whose parameters are replaced by a moment)."""
    names = [k for k in state_dict if not k.endswith(BUFFERS)]
    indices = optimiser["param_groups"][0]["params"]
    if len(indices) != len(names):
        raise ConversionError(
            f"{path} holds {len(indices)} parameters, its model's state dict {len(names)}; are they of one run?"
        )
    per_param = optimiser.get("state", {})
    if not per_param:  # saved before the first step: Adam's initial state
        return 0, None, None
    steps = {int(np.asarray(per_param[i]["step"])) for i in indices}
    if len(steps) != 1:
        raise ConversionError(
            f"{path}: the parameters have different Adam step counts {sorted(steps)}"
        )
    moments = []
    for key in ("exp_avg", "exp_avg_sq"):
        replaced = dict(state_dict)
        replaced.update({name: per_param[i][key] for name, i in zip(names, indices)})
        moments.append(convert(replaced))
    return steps.pop(), *moments


def _tree_like(template, flat: dict):
    """`template` (an nnx State of parameters) with its leaves taken from `flat` ({path tuple:
    array})."""
    paths = traverse_util.flatten_dict(nnx.to_pure_dict(template))
    pure = traverse_util.unflatten_dict(
        {k: jnp.asarray(np.asarray(flat[k], np.float32)) for k in paths}
    )
    tree = jax.tree.map(lambda x: x, template)
    nnx.replace_by_pure_dict(tree, pure)
    return tree


def _adam_state(initial, count: int, params, mu: dict | None, nu: dict | None):
    """optax.adam's state (ScaleByAdamState, EmptyState) with the converted count and moments
    (`initial` when the run had not stepped yet)."""
    adam, *rest = initial
    if not isinstance(adam, optax.ScaleByAdamState):
        raise AssertionError(f"expected optax.adam's state, got {type(adam).__name__}")
    if mu is None:
        return initial
    count = jnp.asarray(count, adam.count.dtype)
    return (adam._replace(count=count, mu=_tree_like(params, mu), nu=_tree_like(params, nu)), *rest)


def convert_run(directory: str, config: ml_collections.ConfigDict):
    """The TrainState of a BigGAN-PyTorch weights folder under `config` (checked against every
    file)."""
    check_weights_folder(directory)
    m, t = config.model, config.train
    _, initial = jax.eval_shape(lambda: train_state.init_state(config, jax.random.key(0)))
    if initial.extras:
        raise ConversionError(
            f"the config switches on techniques with state ({', '.join(initial.extras)}); convert with "
            "them off and switch them on when training"
        )
    g_kinds = biggan_pytorch_kinds(m.sn_eps)
    what = f"BigGAN-PyTorch BigGAN {{}} ({m.resolution}², ch {m.ch_g}/{m.ch_d}, {m.num_classes} classes)"

    def convert_g(sd):
        return convert_layout(sd, biggan_pytorch_layout(m), g_kinds, what.format("G")).flat

    def convert_d(sd):
        return convert_layout(sd, biggan_pytorch_d_layout(m), g_kinds, what.format("D")).flat

    path = lambda name: os.path.join(directory, name)  # noqa: E731
    g_sd, d_sd = load_torch_state_dict(path("G.pth")), load_torch_state_dict(path("D.pth"))
    generator = build_generator(config, convert_g(g_sd))
    discriminator = build_discriminator(config, convert_d(d_sd))
    ema = build_generator(config, convert_g(load_torch_state_dict(path("G_ema.pth"))))
    g_optim = load_torch_object(path("G_optim.pth"), "G.optim.state_dict()")
    d_optim = load_torch_object(path("D_optim.pth"), "D.optim.state_dict()")
    check_adam(g_optim, path("G_optim.pth"), t.lr_g, t.beta1_g, t, "g")
    check_adam(d_optim, path("D_optim.pth"), t.lr_d, t.beta1_d, t, "d")
    run_state = load_torch_object(path("state_dict.pth"), "the state_dict of utils.save_weights")
    if not isinstance(run_state, dict) or "itr" not in run_state:
        raise ConversionError(
            f"{path('state_dict.pth')} has no 'itr' (BigGAN-PyTorch's iteration counter)"
        )
    g_count, g_mu, g_nu = adam_moments(g_sd, g_optim, convert_g, path("G_optim.pth"))
    d_count, d_mu, d_nu = adam_moments(d_sd, d_optim, convert_d, path("D_optim.pth"))

    _, g_params, g_state = nnx.split(generator, nnx.Param, ...)
    _, d_params, d_state = nnx.split(discriminator, nnx.Param, ...)
    _, ema_params, ema_g_state = nnx.split(ema, nnx.Param, ...)
    # The optimiser states' structure comes from optax (a real init: the abstract one has no
    # values).
    g_tx, d_tx = train_state.make_optimizers(t)
    g_opt = _adam_state(g_tx.init(g_params), g_count, g_params, g_mu, g_nu)
    d_opt = _adam_state(d_tx.init(d_params), d_count, d_params, d_mu, d_nu)
    state = train_state.TrainState(
        step=jnp.asarray(int(run_state["itr"]), jnp.int32),
        g_params=g_params,
        g_state=g_state,
        d_params=d_params,
        d_state=d_state,
        ema_params=ema_params,
        g_opt=g_opt,
        d_opt=d_opt,
        extras={},
    )
    if jax.tree.structure(state) != jax.tree.structure(initial):  # what train.py restores into
        raise AssertionError("the converted state does not have the structure of init_state's")
    # G_ema's own SN vectors and BN statistics: sampling this step (load_ema_generator) uses them,
    # as BigGAN-PyTorch's sample.py does; training drops them.
    state = state.replace(extras={checkpoints.EMA_G_STATE: ema_g_state})
    return state, run_state


def convert_run_folder(directory: str, out: str, config_spec: str | None = None) -> str:
    """Write the training workdir `out` from the weights folder `directory` (`out` must hold no
    run)."""
    config = cfg.load_config_file(config_spec) if config_spec else released_run_config()
    out = storage.resolve(out)
    if storage.exists(os.path.join(out, "config.json")) or storage.exists(
        os.path.join(out, "checkpoints")
    ):
        raise FileExistsError(f"--out {out} already holds a run; choose a new directory")
    state, run_state = convert_run(directory, config)
    step = int(state.step)
    storage.makedirs(out)
    checkpoints.record_config(out, config)
    ckpt = checkpoints.Checkpointer(out, keep=config.log.keep_checkpoints)
    # No input position: BigGAN-PyTorch does not record one (the loop starts the data stream
    # afresh).
    ckpt.save(step, state, {}, wait=True)
    ckpt.close()
    g_count = int(state.g_opt[0].count)
    print(
        f"[convert] wrote {out}: step {step} (BigGAN-PyTorch itr {run_state['itr']}, epoch "
        f"{run_state.get('epoch', '?')}); G, D and G_ema weights, G's and D's Adam states (step {g_count}); "
        f"the data stream starts afresh. Continue: python train.py --config CONFIG --workdir {out}",
        flush=True,
    )
    return out
