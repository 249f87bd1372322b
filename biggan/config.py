"""The configuration schema shared by every experiment file in configs/.

`base_config()` holds every key with the paper's row-8 defaults (SPEC §4); an experiment file copies
it and overrides. Unknown keys are refused with the closest valid ones (`check_keys`).
"""
from __future__ import annotations

import difflib
import hashlib
import json

import ml_collections


def model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        arch="biggan",              # 'biggan' | 'biggan_deep'
        resolution=128,
        ch_g=96,                    # channel multiplier of G
        ch_d=96,                    # channel multiplier of D
        dim_z=120,
        shared_dim=128,             # shared class embedding width (SPEC §1)
        num_classes=1000,
        g_attn=(64,),               # resolutions with self-attention in G
        d_attn=(64,),
        hier=True,                  # skip-z (hierarchical latent)
        shared=True,                # shared class embedding
        bn_eps=1e-4,                # SPEC §3: paper raises BN eps to 1e-4
        bn_momentum=0.1,
        bn_group_size=0,            # 0: cross-replica statistics over the global batch; k: per group of k
        sn_eps=1e-4,
        sn_eval_mode="iterate",     # 'iterate' (BigGAN-PyTorch) | 'stored' (released TF Hub weights)
        dtype="float32",            # activation dtype: 'float32' | 'bfloat16' (params stay float32)
        rgb_channels=3,             # BigGAN-deep released weights: 128-channel rgb conv sliced to 3
        d_dropout_keep=1.0,         # dropout on D's last features (paper §4.2; 1.0 = off)
    ))


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    from biggan.data import pipeline  # the data section's keys are owned by the input pipeline
    c.seed = 0
    c.workdir = ""                  # default: workdirs/<config name>
    c.model = model_config()
    c.data = pipeline.default_data_config()
    c.train = ml_collections.ConfigDict(dict(
        batch_size=2048,            # global batch per D/G step
        num_accumulations=1,
        num_d_steps=2,
        num_steps=250_000,
        lr_g=5e-5, lr_d=2e-4,
        beta1_g=0.0, beta1_d=0.0, beta2=0.999, adam_eps=1e-6,
        ortho_beta=1e-4,            # SPEC §3 eq. 3 (exact gradient of R; see BUILD_NOTES)
        ema_decay=0.9999, ema_start=20_000,
        loss="hinge",
        latent="normal",
    ))
    c.log = ml_collections.ConfigDict(dict(
        log_every=50, sv_every=500, sample_every=1000, checkpoint_every=1000, keep_checkpoints=3,
        eval_every=0, best_metric="",
    ))
    c.sample = ml_collections.ConfigDict(dict(standing_stats_batches=100, standing_stats_batch_size=256,
                                              truncation=1.0))
    return c


def shrink_for_smoke_run(c: ml_collections.ConfigDict, *, ch=4, batch_size=4):
    """big_vision's runlocal idea: the same experiment, small enough to build and step on a CPU, reading
    64 of the embedded digits (10 classes) at the experiment's resolution instead of its dataset."""
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


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, prefix=""):
    """Raise if `config` has a key `reference` lacks, naming the closest valid keys."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if key not in reference:
            close = difflib.get_close_matches(key, list(reference.keys()), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + k for k in close)}?" if close else ""
            raise KeyError(f"unknown config key {path!r}{hint} (valid keys here: "
                           f"{', '.join(sorted(prefix + k for k in reference.keys()))})")
        if isinstance(value, ml_collections.ConfigDict) and isinstance(reference[key], ml_collections.ConfigDict):
            check_keys(value, reference[key], prefix=path + ".")


def config_hash(config: ml_collections.ConfigDict) -> str:
    """A stable hash of a config, to compare the configs of cooperating processes."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load `path/to/config.py[:arg]` (the same syntax as train.py's --config) and check its keys."""
    import importlib.util
    import os

    path, _, arg = spec.partition(":")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} not found; shipped configs: "
                                f"{', '.join(sorted(os.listdir('configs'))) if os.path.isdir('configs') else 'configs/*.py'}")
    module_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    check_keys(config, base_config())
    return config
