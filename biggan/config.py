"""The configuration schema shared by every experiment file in configs/.

`base_config()` holds every key with the paper's row-8 defaults (table 1 row 8, appendix C); an experiment file copies
it and overrides. Unknown keys are refused with the closest valid ones (`check_keys`).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os

import jax
import ml_collections

from biggan.data import source_config  # the data section's keys are owned by the data package
from biggan.runtime import distributed, storage


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
            sn_eval_mode="iterate",  # 'iterate' (BigGAN-PyTorch) | 'stored' (released TF Hub weights)
            dtype="float32",  # activation dtype: 'float32' | 'bfloat16' (params stay float32)
            rgb_channels=3,  # BigGAN-deep released weights: 128-channel rgb conv sliced to 3
            d_dropout_keep=1.0,  # dropout on D's last features (paper §4.2; 1.0 = off)
            d_minibatch_kernels=0,  # minibatch discrimination (Salimans 2016) on D's pooled features: B kernels (0 = off)
            d_minibatch_kernel_dim=5,  # ... of C dims each (T ∈ R^{A×B×C}; improved-gan used B=100, C=5)
        )
    )


def base_config() -> ml_collections.ConfigDict:
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
            # Ablation toolkit (README, Ablations). Every default is neutral: the step is paper row 8.
            hinge_margin=1.0,  # hinge / rahinge margin
            latent_kwargs="",  # sampler options "k=v,k=v" (biggan.gan.latents; variance_annealing gets the step)
            label_smoothing=0.0,  # one-sided: real target 1 − s (losses with targets only)
            r1_gamma=0.0,  # R1 γ/2·E‖∇D(x_real)‖²
            dragan_weight=0.0,
            gp_weight=0.0,  # WGAN-GP λ
            sigma0_reg_strength=0.0,  # regularise G's σ0 towards sigma0_target or sigma0_ratio·sg(σ1)
            sigma0_target=0.0,  # 0: use sigma0_ratio
            sigma0_ratio=0.0,
            sigma0_clamp=0.0,  # after each G update clamp G's σ0 to this (0: off) ...
            sigma0_clamp_ratio=0.0,  # ... or to ratio·σ1 (0: off)
            instance_noise_sigma=0.0,  # N(0, σ²) on every D input, annealed to 0 over instance_noise_anneal_steps
            instance_noise_anneal_steps=0,  # 0: constant σ
            feature_matching_weight=0.0,  # + w·‖E f(x) − E f(G(z))‖² on D's pooled features, in G's loss
            label_noise=0.0,  # probability of flipping each of D's real/fake targets (losses with targets)
            soft_labels=False,  # targets real ~ U[0.7, 1.2], fake ~ U[0, 0.3] (Salimans et al. 2016 / ganhacks; losses with targets)
            historical_averaging_weight=0.0,  # + w·‖θ − mean of past θ‖² in D's and G's losses (Salimans 2016)
            historical_averaging_decay=0.0,  # 0: exact mean of all past θ; d ∈ (0, 1): exponential, m ← d·m + (1−d)·θ
            replay_capacity=0,  # experience replay: buffer of past fakes (0 = off) ...
            replay_fraction=0.0,  # ... and the fraction of each D fake batch drawn from it
            pacgan_pack=1,  # PacGAN: D scores packs of m samples stacked on channels (1 = off)
            unrolled_d_steps=0,  # unrolled GAN: G's loss against D advanced k updates ahead (first order; 0 = off)
            # Data-efficient and consistency techniques (biggan/techniques/; README, Ablations). All off by default.
            diffaug_policy="",  # DiffAugment on every D input, e.g. "color,translation,cutout" ('' = off)
            ada_target=0.0,  # ADA: target of E[sign(D(real))] (Karras et al.: 0.6; 0 = off) ...
            ada_policy="color,translation,cutout",  # ... the augmentations applied with probability p ...
            ada_interval=4,
            ada_kimg=500.0,
            ada_p_init=0.0,  # ... p adjusted every 4 steps, by ≤ 1 per 500k reals
            lecam_weight=0.0,  # LeCam λ (Tseng et al.: 0.3 with DiffAugment on CIFAR; 0 = off) ...
            lecam_decay=0.99,
            lecam_start=0,  # ... anchors' EMA decay; steps before the term starts
            cr_real_weight=0.0,  # CR: λ·E[(D(x) − D(T(x)))²] on reals (Zhang et al.: 10; 0 = off) ...
            cr_fake_weight=0.0,  # ... and on fakes (bCR: both 10)
            cr_augment="flip,reflect_translation",  # T of CR/bCR
            zcr_d_weight=0.0,
            zcr_g_weight=0.0,  # zCR: λ_dis (5), λ_gen (0.5); 0 = off
            zcr_sigma=0.03,  # zCR: z' = z + N(0, σ²I)
            # Fine-tuning: start G, D and the EMA from a training workdir, or G and the EMA from an exported or
            # converted generator (biggan/train/finetune.py); used when the workdir has no checkpoint yet.
            init_from="",
            freeze_d_blocks=0,  # FreezeD: keep D's first k blocks at their initial weights (0 = off)
            # Collapse rollback (biggan/train/collapse.py; monitor thresholds in log.collapse_*): on a flagged
            # collapse go back to the checkpoint ≥ rollback_steps before it and apply rollback_overrides.
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
            # Host reads of device values happen only on log/checkpoint/sample/eval steps (the non-finite
            # guard is checked there and before every save). Multi-process: the hosts agree on a SIGTERM
            # (an all-gather) every this many steps, so all save the same step.
            preemption_check_every=10,
            # A save still unfinished after this many seconds fails the run, naming the last complete checkpoint
            # (orbax and its storage clients retry a lost bucket or server for a long time on their own).
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
            num_samples=10_000,  # in-training evaluation (50k for reported numbers: biggan.evaluate score)
            truncation=0.0,  # 0: no truncation
            reference_moments="",  # moments .npz of the training data (python -m biggan.evaluate moments)
            inception_weights="",  # pt_inception-2015-12-05-6726825d.pth; '' = default cache path
        )
    )
    # Standing statistics (paper appendix C.1; biggan.sampling.sampler.standing_stats): batches x batch size
    # samples through G in training mode, once per truncation, cached beside the checkpoint. Each batch
    # is split over the devices: memory is one training-mode G forward at batch_size / devices, time
    # about batches x that forward (BigGAN-128: 100 x 256 ~ 25,600 samples).
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
            latents="ours",  # 'ours': truncated normal by re-sampling; 'tfhub': z = t·truncnorm(−2, 2)
        )
    )
    return c


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
) -> ml_collections.ConfigDict:
    """An ImageNet experiment with the paper's recipe (table 1 row 8, appendix C): batch 2048, 2 D steps per
    G step, Adam β1 0 β2 0.999, ortho β 1e-4, G EMA 0.9999 from step 20k, D attention at 64², FID every
    2000 steps picking the best checkpoint. `arg`: comma-separated options, "runlocal" (shrink for a CPU
    smoke run) and "bf16" (bfloat16 activations; parameters, optimiser state and BN statistics stay
    float32), e.g. `configs/biggan_deep_128.py:bf16` or `:runlocal,bf16`."""
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
    if "bf16" in options:
        c.model.dtype = "bfloat16"
    if "runlocal" in options:
        shrink_for_smoke_run(c, batch_size=smoke_batch_size)
    return c


def parse_config_arg(arg: str | None, valid: tuple[str, ...]) -> set[str]:
    """The options of a config argument `a,b` (`path.py:a,b` on the command line); unknown ones raise."""
    options = {part.strip() for part in (arg or "").split(",") if part.strip()}
    unknown = sorted(options - set(valid))
    if unknown:
        raise ValueError(
            f"config argument {arg!r}: unknown option(s) {unknown}; valid: {', '.join(valid)} "
            "(comma-separated, e.g. runlocal,bf16)"
        )
    return options


def shrink_for_smoke_run(c: ml_collections.ConfigDict, *, ch=8, batch_size=4):
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


def unknown_key_message(
    shown: str, key: str, valid, prefix: str = "", hint_prefix: str | None = None
) -> str:
    """'unknown config key <shown>; did you mean …? (valid keys here: …)': the closest of the `valid` keys
    of this level to `key`, suggested as `hint_prefix` + key and listed as `prefix` + key."""
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


def upgrade(stored) -> ml_collections.ConfigDict:
    """A config read back from a config.json (a training workdir's or an exported generator's), completed
    with today's schema: a key the schema gained after the file was written takes its default, which is the
    behaviour of that time (every new key defaults to it). The one place where defaults stand in for missing
    keys: every reader of a config.json goes through `read_config`, so the rest of the code reads keys plainly.
    Keys the schema no longer has are kept."""

    def merge(default: dict, saved: dict) -> dict:
        out = dict(default)
        for key, value in saved.items():
            both_sections = isinstance(value, dict) and isinstance(default.get(key), dict)
            out[key] = merge(default[key], value) if both_sections else value
        return out

    saved = stored.to_dict() if isinstance(stored, ml_collections.ConfigDict) else dict(stored)
    return ml_collections.ConfigDict(merge(base_config().to_dict(), saved))


def read_config(directory: str) -> ml_collections.ConfigDict:
    """`directory`/config.json, upgraded to today's schema."""
    return upgrade(json.loads(storage.read_text(os.path.join(directory, "config.json"))))


def check_config_path(path: str) -> None:
    """Refuse a config file that does not exist, listing the shipped ones."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"config file {path!r} not found; shipped configs: "
            f"{', '.join(sorted(os.listdir('configs'))) if os.path.isdir('configs') else 'configs/*.py'}"
        )


def run_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of `path/to/config.py[:arg]` (the syntax of train.py's --config), keys unchecked."""
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
    """Check `--config.a.b=value` command-line overrides against the schema before flag parsing, so an
    unknown key fails with one clear line naming the closest valid keys (not a traceback)."""
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


def flatten(tree, prefix: str = "") -> dict:
    """Nested ConfigDict/dict → {dotted key: value} (leaves only; an empty section has none)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def set_overrides(config: ml_collections.ConfigDict, overrides: dict, what: str) -> None:
    """Set dotted keys (`{'train.lr_g': 2.5e-5}`) of `config` in place. A key the schema (base_config)
    lacks raises a KeyError naming `what` and the closest valid keys."""
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


def check_same_config(config):
    """Refuse to train when processes were started with different configs, naming the differing keys.

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
