"""The configuration schema shared by every experiment file in configs/.

`base_config()` holds every key: those of biggan.core_config (the paper's row-8 defaults, table 1
row 8, appendix C) and each technique's, declared in its file with a neutral default; an experiment
file copies it and overrides. Unknown keys are refused with the closest valid ones
(`core_config.check_keys`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os

import jax
import ml_collections

from biggan import core_config
from biggan.core_config import check_keys, flatten, unknown_key_message
from biggan.runtime import distributed
from biggan.techniques import registry


def base_config() -> ml_collections.ConfigDict:
    """The whole schema: `core_config()` and every technique's keys with their neutral defaults."""
    c = core_config.core_config()
    for key, default in registry.config_keys().items():
        section, name = key.split(".")
        if name in c[section]:
            raise ValueError(f"technique key {key} is already a key of biggan.core_config")
        c[section][name] = default
    return c


def read_config(directory: str) -> ml_collections.ConfigDict:
    """`directory`/config.json, upgraded to the whole schema (a training workdir's, to resume or
    fine-tune)."""
    return core_config.read_config(directory, base_config())


# The paper's BigGAN-128 (appendix B, table 4), as imagenet_config's keyword arguments.
BIGGAN_128 = dict(arch="biggan", resolution=128, ch=96, dim_z=120, g_attn=(64,))


def imagenet_config(
    arg,
    *,
    arch: str,
    resolution: int,
    ch: int,
    dim_z: int,
    g_attn: tuple,
    lr_g: float,
    lr_d: float,
    smoke_batch_size: int = 2,
    recipe: dict | None = None,
) -> ml_collections.ConfigDict:
    """An ImageNet experiment with the paper's recipe (table 1 row 8, appendix C): batch 2048, 2 D
    steps per G step, Adam β1 0 β2 0.999, ortho β 1e-4, G EMA 0.9999 from step 20k, D attention at
    64², FID every 2000 steps picking the best checkpoint. `arg`: comma-separated options,
    "runlocal" (shrink for a CPU smoke run) and "bf16" (bfloat16 activations; parameters, optimiser
    state and BN statistics stay float32), e.g. `configs/biggan_deep_128.py:bf16` or
    `:runlocal,bf16`. `recipe`: dotted keys another recipe changes ({"train.batch_size": 256}), set
    before the smoke shrink."""
    options = parse_config_arg(arg, ("runlocal", "bf16"))
    c = base_config()
    c.model.update(
        arch=arch, resolution=resolution, ch_g=ch, ch_d=ch, dim_z=dim_z, g_attn=g_attn, d_attn=(64,)
    )
    c.data.update(source="tfds", tfds_name="imagenet2012", resolution=resolution)
    c.train.update(
        batch_size=2048,
        num_d_steps=2,
        lr_g=lr_g,
        lr_d=lr_d,
        ortho_beta=1e-4,
        ema_decay=0.9999,
        ema_start=20_000,
    )
    c.log.update(eval_every=2000, best_metric="fid")
    set_overrides(c, recipe or {}, "imagenet_config recipe:")
    if "bf16" in options:
        c.model.dtype = "bfloat16"
    if "runlocal" in options:
        shrink_for_smoke_run(c, batch_size=smoke_batch_size)
    return c


def parse_config_arg(arg: str | None, valid: tuple[str, ...]) -> set[str]:
    """The options of a config argument `a,b` (`path.py:a,b` on the command line); unknown ones
    raise."""
    options = {part.strip() for part in (arg or "").split(",") if part.strip()}
    unknown = sorted(options - set(valid))
    if unknown:
        raise ValueError(
            f"config argument {arg!r}: unknown option(s) {unknown}; valid: {', '.join(valid)} "
            "(comma-separated, e.g. runlocal,bf16)"
        )
    return options


def shrink_for_smoke_run(c: ml_collections.ConfigDict, *, ch=8, batch_size=4):
    """big_vision's runlocal idea: the same experiment, small enough to build and step on a CPU,
    reading 64 of the embedded digits (10 classes) at the experiment's resolution instead of its
    dataset."""
    c.model.ch_g = c.model.ch_d = ch
    c.model.shared_dim = 8
    c.model.num_classes = 10
    c.train.batch_size = batch_size
    c.train.num_accumulations = 1
    c.train.num_steps = 2
    c.train.ema_start = 1
    c.sample.standing_stats_batches = 2
    c.sample.standing_stats_batch_size = batch_size
    c.log.update(log_every=1, sv_every=1, sample_every=2, checkpoint_every=2, eval_every=0)
    c.data.update(source="digits", path="", max_examples=64)
    return c


def check_config_path(path: str) -> None:
    """Refuse a config file that does not exist, listing the shipped ones."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"config file {path!r} not found; shipped configs: "
            f"{', '.join(sorted(os.listdir('configs'))) if os.path.isdir('configs') else 'configs/*.py'}"
        )


def run_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of `path/to/config.py[:arg]` (the syntax of train.py's --config), keys
    unchecked."""
    path, _, arg = spec.partition(":")
    check_config_path(path)
    module_spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load `path/to/config.py[:arg]` and check its keys against the schema."""
    config = run_config_file(spec)
    check_keys(config, base_config())
    return config


def check_override_flags(argv) -> None:
    """Check `--config.a.b=value` command-line overrides against the schema before flag parsing, so
    an unknown key fails with one clear line naming the closest valid keys (not a traceback)."""
    reference = base_config()
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0].split(".")
        node, prefix = reference, ""
        for key in path:
            if not isinstance(node, ml_collections.ConfigDict):
                break
            if key not in node:
                raise ValueError(
                    unknown_key_message(
                        f"--config.{prefix}{key}",
                        key,
                        node.keys(),
                        prefix,
                        hint_prefix="--config." + prefix,
                    )
                )
            node, prefix = node[key], f"{prefix}{key}."


def set_overrides(config: ml_collections.ConfigDict, overrides: dict, what: str) -> None:
    """Set dotted keys (`{'train.lr_g': 2.5e-5}`) of `config` in place. A key the schema
    (base_config) lacks raises a KeyError naming `what` and the closest valid keys."""
    valid = flatten(base_config())
    for key, value in overrides.items():
        if key not in valid and not any(key.startswith(k + ".") for k in valid):
            close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
            raise KeyError(
                f"{what} {key!r} is not a config key"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        with node.unlocked():
            node[leaf] = value


def check_same_config(config):
    """Refuse to train when processes were started with different configs, naming the differing
    keys.

    Every process sees every config, so all of them raise (none is left waiting in a collective).
    """
    if jax.process_count() == 1:
        return
    configs = [flatten(c) for c in distributed.allgather_json(config.to_dict())]
    reference = configs[0]
    problems = []
    for index, own in enumerate(configs[1:], start=1):
        diff = sorted(k for k in set(reference) | set(own) if reference.get(k) != own.get(k))
        if diff:
            problems.append(
                f"process {index} differs from process 0 in "
                + ", ".join(
                    f"{k} ({own.get(k, '<missing>')!r} vs {reference.get(k, '<missing>')!r})"
                    for k in diff
                )
            )
    if problems:
        raise ValueError(
            f"the {len(configs)} processes were started with different configs: "
            + "; ".join(problems)
            + ". Start every process with the same config file and overrides."
        )
