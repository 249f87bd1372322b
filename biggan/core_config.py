"""The config keys of everything but the training techniques: the model, the data, the training
recipe, logging, evaluation and sampling, with the paper's row-8 defaults (table 1 row 8, appendix
C), and the reading of a stored config.json (`read_config`, `upgrade`).

Each technique declares its own keys in its file (biggan/techniques/); `biggan.config.base_config`
adds them to these. Sampling, evaluation and the checkpoint reader rebuild a generator from this
module alone, so they import no technique.
"""

from __future__ import annotations

import ast
import difflib
import json
import os

import ml_collections

from biggan.data import source_config  # the data section's keys are owned by the data package
from biggan.runtime import storage


def model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            arch="biggan",  # 'biggan' | 'biggan_deep'
            resolution=128,
            ch_g=96,  # channel multiplier of G
            ch_d=96,  # channel multiplier of D
            dim_z=120,
            shared_dim=128,  # shared class embedding width (paper appendix B)
            num_classes=1000,
            g_attn=(64,),  # resolutions with self-attention in G
            d_attn=(64,),
            hier=True,  # skip-z (hierarchical latent)
            shared=True,  # shared class embedding
            bn_eps=1e-4,  # paper appendix C raises BN eps to 1e-4
            bn_momentum=0.1,
            bn_group_size=0,  # 0: cross-replica statistics over the global batch; k: per group of k
            sn_eps=1e-4,
            # 'iterate' (BigGAN-PyTorch) | 'stored' (released TF Hub weights)
            sn_eval_mode="iterate",
            dtype="float32",  # activation dtype: 'float32' | 'bfloat16' (params stay float32)
            rgb_channels=3,  # BigGAN-deep released weights: 128-channel rgb conv sliced to 3
            # minibatch discrimination (Salimans 2016) on D's pooled features: B kernels (0 = off)
            d_minibatch_kernels=0,
            # ... of C dims each (T ∈ R^{A×B×C}; improved-gan used B=100, C=5)
            d_minibatch_kernel_dim=5,
        )
    )


def core_config() -> ml_collections.ConfigDict:
    """Every section with its keys and the paper's row-8 defaults, except the techniques' keys."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = ""  # default: workdirs/<config name>
    c.model = model_config()
    c.data = source_config.default_data_config()
    c.train = ml_collections.ConfigDict(
        dict(
            batch_size=2048,  # global batch per D/G step
            num_accumulations=1,
            num_d_steps=2,
            num_steps=250_000,
            lr_g=5e-5,
            lr_d=2e-4,
            beta1_g=0.0,
            beta1_d=0.0,
            beta2=0.999,
            adam_eps=1e-6,
            ortho_beta=1e-4,  # paper eq. 3 (exact gradient of R; see BUILD_NOTES)
            ema_decay=0.9999,
            ema_start=20_000,
            loss="hinge",
            latent="normal",
            hinge_margin=1.0,  # hinge / rahinge margin
            # sampler options "k=v,k=v" (biggan.gan.latents; variance_annealing gets the step)
            latent_kwargs="",
            # unrolled GAN: G's loss against D advanced k updates ahead (first order; 0 = off)
            unrolled_d_steps=0,
            # Fine-tuning: start G, D and the EMA from a training workdir, or G and the EMA from an
            # exported or converted generator (biggan/train/finetune.py); used when the workdir has
            # no checkpoint yet.
            init_from="",
            # Collapse rollback (biggan/train/collapse.py; monitor thresholds in log.collapse_*): on
            # a flagged collapse go back to the checkpoint ≥ rollback_steps before it and apply
            # rollback_overrides.
            rollback_steps=0,  # 0: a flagged collapse is only logged
            rollback_overrides="",  # "train.lr_g=2.5e-5,train.lr_d=1e-4"
            rollback_max=3,  # give up (raise) after this many rollbacks
        )
    )
    c.log = ml_collections.ConfigDict(
        dict(
            log_every=50,
            sv_every=500,
            sample_every=1000,
            checkpoint_every=1000,
            keep_checkpoints=3,
            eval_every=0,
            best_metric="",
            # Host reads of device values happen only on log/checkpoint/sample/eval steps (the
            # non-finite guard is checked there and before every save). Multi-process: the hosts
            # agree on a SIGTERM (an all-gather) every this many steps, so all save the same step.
            preemption_check_every=10,
            # A save still unfinished after this many seconds fails the run, naming the last
            # complete checkpoint (orbax and its storage clients retry a lost bucket or server for a
            # long time on their own).
            checkpoint_timeout_s=1800,
            # Collapse monitor (biggan/train/collapse.py): off while collapse_window = 0.
            collapse_window=0,  # trailing log points compared against (their median)
            collapse_sigma_jump=2.0,  # flag when max σ0 of G's weights > this × its trailing median
            collapse_d_loss_floor=0.05,  # ... or when D loss < this ...
            collapse_g_loss_jump=1.0,  # ... while G loss > its trailing median + this
            collapse_force_step=0,  # tests only: flag a collapse at this step
        )
    )
    c.eval = ml_collections.ConfigDict(
        dict(
            # in-training evaluation (50k for reported numbers: biggan.evaluate score)
            num_samples=10_000,
            truncation=0.0,  # 0: no truncation
            # moments .npz of the training data (python -m biggan.evaluate moments)
            reference_moments="",
            inception_weights="",  # pt_inception-2015-12-05-6726825d.pth; '' = default cache path
        )
    )
    # Standing statistics (paper appendix C.1; biggan.sampling.sampler.standing_stats): batches x
    # batch size samples through G in training mode, once per truncation, cached beside the
    # checkpoint. Each batch is split over the devices: memory is one training-mode G forward at
    # batch_size / devices, time about batches x that forward (BigGAN-128: 100 x 256 ~ 25,600
    # samples).
    c.sample = ml_collections.ConfigDict(
        dict(
            standing_stats_batches=100,
            standing_stats_batch_size=256,
            truncation=1.0,
            # Which BN statistics evaluation-mode sampling uses (biggan.sampling.sampler.Sampler; sample.py
            # --standing_stats overrides): 'standing' (accumulated, above; our runs), 'stored' (the mean/var
            # in the weights: BigGAN-PyTorch's eval mode), 'truncation_table' (TF Hub modules' per-truncation
            # statistics, biggan/sampling/truncation_stats.py, grid named by truncation_table).
            bn_stats="standing",
            truncation_table="",
            # 'ours': truncated normal by re-sampling; 'tfhub': z = t·truncnorm(−2, 2)
            latents="ours",
        )
    )
    return c


def unknown_key_message(
    shown: str, key: str, valid, prefix: str = "", hint_prefix: str | None = None
) -> str:
    """'unknown config key <shown>; did you mean …? (valid keys here: …)': the closest of the
    `valid` keys of this level to `key`, suggested as `hint_prefix` + key and listed as `prefix` +
    key."""
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint_prefix = prefix if hint_prefix is None else hint_prefix
    hint = f"; did you mean {', '.join(hint_prefix + k for k in close)}?" if close else ""
    return f"unknown config key {shown}{hint} (valid keys here: {', '.join(sorted(prefix + k for k in valid))})"


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, prefix=""):
    """Raise if `config` has a key `reference` lacks, naming the closest valid keys."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if key not in reference:
            raise KeyError(unknown_key_message(repr(path), key, reference.keys(), prefix))
        if isinstance(value, ml_collections.ConfigDict) and isinstance(
            reference[key], ml_collections.ConfigDict
        ):
            check_keys(value, reference[key], prefix=path + ".")


def upgrade(stored, schema: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A config read back from a config.json (a training workdir's or an exported generator's),
    completed with `schema`: a key the schema gained after the file was written takes its default,
    which is the behaviour of that time (every new key defaults to it). The one place where defaults
    stand in for missing keys: every reader of a config.json goes through `read_config`, so the rest
    of the code reads keys plainly. Keys the schema no longer has are kept."""

    def merge(default: dict, saved: dict) -> dict:
        out = dict(default)
        for key, value in saved.items():
            both_sections = isinstance(value, dict) and isinstance(default.get(key), dict)
            out[key] = merge(default[key], value) if both_sections else value
        return out

    saved = stored.to_dict() if isinstance(stored, ml_collections.ConfigDict) else dict(stored)
    return ml_collections.ConfigDict(merge(schema.to_dict(), saved))


def read_config(directory: str, schema=None) -> ml_collections.ConfigDict:
    """`directory`/config.json, upgraded to `schema` (default: `core_config()`, what a generator is
    rebuilt and sampled from; `biggan.config.read_config` passes the whole schema)."""
    stored = json.loads(storage.read_text(os.path.join(directory, "config.json")))
    return upgrade(stored, core_config() if schema is None else schema)


def flatten(tree, prefix: str = "") -> dict:
    """Nested ConfigDict/dict → {dotted key: value} (leaves only; an empty section has none)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_kwargs(text: str, what: str) -> dict:
    """ "k=v,k=v" → {k: literal v} (config strings that stay overridable from the command line)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(
                f"{what}={text!r}: expected comma-separated key=value pairs, e.g. 'a=1,b=0.5'"
            )
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()  # a bare word is a string
    return out
