"""Sampling: standing statistics, truncation and samplers for our checkpoints and released weights.

Truncation has two meanings (paper §3.1; TF Hub modules):
- our models: z ~ N(0, I) truncated at `threshold` by RE-SAMPLING (biggan.gan.latents.truncated_normal);
  None = no truncation. G's batch norms use standing statistics accumulated at that threshold. A run trained
  with an appendix-E latent (`train.latent`) is sampled from that latent everywhere (`latent_of`).
- released TF Hub models (config.sample.latents 'tfhub'): z = t·truncnorm(−2, 2) and t also selects the
  stored per-truncation BN statistics (biggan.sampling.truncation_stats).
BN statistics: see `Sampler` (standing, stored, or the per-truncation table).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from biggan import checkpoints, core_config
from biggan.gan import latents
from biggan.runtime import sharding, storage
from biggan.sampling import export
from biggan.sampling.truncation_stats import (
    apply_truncation_stats,
    batchnorm_paths,
    check_truncation,
)

log = logging.getLogger(__name__)


NORMAL = ("normal", {})


def latent_of(config) -> tuple[str, dict]:
    """(name, kwargs) of the latent distribution a run was trained with (`train.latent`, paper
    appendix E): every place the run samples draws from it. Variance annealing samples at the end of
    its schedule (σ_end, the distribution G is annealed towards)."""
    t = config.train
    if t.latent == "normal":
        return NORMAL
    kwargs = core_config.parse_kwargs(t.latent_kwargs, "train.latent_kwargs")
    if t.latent == "variance_annealing":
        kwargs = dict(kwargs, step=kwargs["anneal_steps"])
    return t.latent, kwargs


def check_latent_truncation(latent, truncation):
    if truncation and latent[0] != "normal":
        raise ValueError(
            f"truncation {truncation}: the truncation trick re-samples a normal latent (paper §3.1), "
            f"but this run was trained with train.latent={latent[0]!r} (appendix E); sample it "
            f"without --truncation"
        )


def sample_latents(rng, num, dim_z, truncation=None, *, released=False, latent=NORMAL):
    """z for `num` samples: released TF Hub models z = t·truncnorm(−2, 2); ours the run's latent
    (`latent_of`), for the normal one truncated at `truncation` by re-sampling."""
    if released:  # t = 1 when none is given: untruncated (the TF Hub modules' default)
        return latents.tfhub_truncated_latent(
            rng, (num, dim_z), float(1.0 if truncation is None else truncation)
        )
    if latent == NORMAL:
        return latents.truncated_normal(rng, (num, dim_z), truncation if truncation else None)
    check_latent_truncation(latent, truncation)
    name, kwargs = latent
    return latents.sample_latent(name, rng, (num, dim_z), **kwargs).astype(jnp.float32)


def parse_truncations(text: str) -> list[float]:
    """'0.1:1.0:0.1' (start:stop:step, stop included) or '0.25,0.5,1.0'."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"truncations {text!r}: expected start:stop:step with step > 0 and "
            "stop >= start (e.g. 0.1:1.0:0.1) or a comma list (e.g. 0.25,0.5,1.0)"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"truncations {text!r} gives {values}; expected positive values")
    return values


def sampling_mesh():
    """The devices sampling and evaluation shard their batch over: all of them (one process) or this
    process's (multi-process: each process samples its own chunks,
    biggan/evaluation/evaluator.py)."""
    return sharding.make_mesh(jax.local_devices())


def place_generator(generator, mesh=None):
    """`generator` with its arrays replicated on `mesh` (default `sampling_mesh()`). Arrays of a
    multi-process checkpoint restore span every process; this process's copy is taken (no
    collective)."""
    mesh = mesh or sampling_mesh()
    replicated = sharding.replicated(mesh)

    def place(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return jax.device_put(x, replicated)

    graphdef, state = nnx.split(generator)
    return nnx.merge(graphdef, jax.tree.map(place, state))


# Built once per (generator structure, mesh): jit caches on the static graphdef, so every Sampler,
# every in-training evaluation and every truncation reuse the compiled forward (no fresh closures to
# re-trace).
@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_forward(graphdef, mesh, state, z, y):
    images = nnx.merge(graphdef, state, copy=True)(z, y, train=False)
    return jax.lax.with_sharding_constraint(images, sharding.batch_sharding(mesh))


@functools.partial(jax.jit, static_argnums=(0,))
def _bn_batch_stats(graphdef, state, z, y):
    generator = nnx.merge(graphdef, state, copy=True)
    generator(z, y, train=True)
    return {path: (bn.mean[...], bn.var[...]) for path, bn in batchnorm_paths(generator).items()}


def standing_stats(
    generator,
    *,
    num_batches: int,
    batch_size: int,
    rng,
    truncation=None,
    num_classes=None,
    progress: bool = False,
    mesh=None,
    released: bool = False,
    latent=NORMAL,
) -> dict:
    """Paper appendix C.1: average the per-batch BN means and variances of G run in training mode on
    `num_batches` batches of fresh noise (at the truncation that will be sampled). Returns {'<bn
    path>/mean'|'/var': (C,)} — the format `apply_bn_stats` writes back. `generator` is unchanged.

    Each batch is sharded over `mesh` (default `sampling_mesh()`; the largest leading group of its
    devices that divides `batch_size`): a device holds batch_size / devices samples, and the
    statistics are those of the whole batch (cross-device reductions under jit), as on one device.
    """
    mesh = mesh or sampling_mesh()
    if num_batches < 1 or batch_size < 1:
        raise ValueError(
            f"standing statistics need at least one batch of one sample; got {num_batches} x {batch_size}"
        )
    devices = mesh.devices.ravel()
    count = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    mesh = sharding.make_mesh(devices[:count])
    gen = place_generator(nnx.clone(generator), mesh)
    bns = batchnorm_paths(gen)
    for bn in bns.values():
        bn.momentum = 1.0  # after a training forward, mean/var hold exactly that batch's statistics
    graphdef, state = nnx.split(gen)
    num_classes = num_classes or gen.num_classes
    if progress and jax.process_index() == 0:  # a long accumulation is announced, never silent
        print(
            f"standing statistics (paper appendix C.1): {num_batches} batches x {batch_size} samples at "
            f"truncation {truncation}, {batch_size // count} per device on {count} device(s); "
            "sample.standing_stats_batches / _batch_size change it",
            file=sys.stderr,
            flush=True,
        )
    sums = None
    for i in tqdm(range(num_batches), desc="standing stats", unit="batch", disable=not progress):
        kz, ky = jax.random.split(jax.random.fold_in(rng, i))
        z = sample_latents(kz, batch_size, gen.dim_z, truncation, released=released, latent=latent)
        y = jax.random.randint(ky, (batch_size,), 0, num_classes)
        # batch_size divides over `mesh`: no padding (it would change BN)
        batch = sharding.batch_sharding(mesh)
        stats = _bn_batch_stats(graphdef, state, jax.device_put(z, batch), jax.device_put(y, batch))
        sums = stats if sums is None else jax.tree.map(jnp.add, sums, stats)
    out = {}
    for path, (m, v) in sums.items():
        out[f"{path}/mean"] = np.asarray(m / num_batches)
        out[f"{path}/var"] = np.asarray(v / num_batches)
    return out


def apply_bn_stats(generator, stats: dict):
    """Write {'<bn path>/mean'|'/var': (C,)} into G's batch norms (in place)."""
    for path, bn in batchnorm_paths(generator).items():
        bn.mean.set_value(jnp.asarray(stats[f"{path}/mean"]))
        bn.var.set_value(jnp.asarray(stats[f"{path}/var"]))


def stats_source(config, truncation_stats=None) -> tuple[str, str, str]:
    """(bn_stats, latents, truncation_table) of a run or export: its config.sample, or for exports
    written before those keys existed, what their files imply (a per-truncation table: a converted
    TF Hub model)."""
    s = config.sample
    if truncation_stats is not None:
        default = ("truncation_table", "tfhub", "pytorch_pretrained_biggan")
    else:
        default = ("standing", "ours", "")
    return (
        s.get("bn_stats", default[0]),
        s.get("latents", default[1]),
        s.get("truncation_table", default[2]) or default[2],
    )


class Sampler:
    """Batched evaluation-mode sampling from a generator with the right BN statistics for a
    truncation.

    Which statistics (`config.sample.bn_stats`, or `standing_stats` here): 'truncation_table' (TF
    Hub exports), 'stored' (the BN state as loaded: BigGAN-PyTorch's eval mode) or 'standing' (paper
    appendix C.1: accumulated once per truncation, cached in `cache_dir`). `standing_stats`: None
    keeps the config's choice; 0 uses the stored statistics; N > 0 accumulates standing statistics
    over N batches.
    """

    def __init__(
        self,
        config,
        generator,
        *,
        truncation_stats=None,
        cache_dir=None,
        standing_stats=None,
        progress=True,
        mesh=None,
    ):
        self.config = config
        self.truncation_stats = truncation_stats
        self.bn_stats, latents_kind, self.truncation_table = stats_source(config, truncation_stats)
        self.released = latents_kind == "tfhub"
        self.latent = NORMAL if self.released else latent_of(config)
        self.standing_batches = int(config.sample.standing_stats_batches)
        if standing_stats is not None:
            self.bn_stats = "standing" if standing_stats > 0 else "stored"
            self.standing_batches = int(standing_stats) or self.standing_batches
        if self.bn_stats == "truncation_table" and truncation_stats is None:
            raise ValueError(
                "config.sample.bn_stats='truncation_table' but the export has no truncation_stats.npz; "
                "re-run biggan.convert, or sample with --standing_stats N"
            )
        self.cache_dir = cache_dir
        self.progress = progress
        self.num_classes = config.model.num_classes
        self.mesh = mesh or sampling_mesh()
        self.generator = place_generator(generator, self.mesh)
        self._stats_for = None

    def check_truncation(self, truncation):
        """Raise ValueError for a truncation this model cannot sample (released: outside its table's
        range)."""
        if self.released:
            check_truncation(
                1.0 if truncation is None else truncation,
                self.truncation_table or "pytorch_pretrained_biggan",
            )
        elif truncation is not None and truncation < 0:
            raise ValueError(
                f"truncation {truncation} is negative; expected a re-sampling threshold > 0 (or none)"
            )
        else:
            check_latent_truncation(self.latent, truncation)

    def describe_stats(self, truncation) -> str:
        """One line saying which BN statistics a forward at `truncation` uses."""
        if self.bn_stats == "truncation_table":
            return f"BN statistics: the module's per-truncation table at t={truncation} ({self.truncation_table})"
        if self.bn_stats == "stored":
            return "BN statistics: stored in the weights (evaluation mode of the source code)"
        s = self.config.sample
        return (
            f"BN statistics: standing statistics (paper appendix C.1), {self.standing_batches} batches x "
            f"{s.standing_stats_batch_size} at truncation {truncation}, cached in {self.cache_dir}"
        )

    def _standing_cache_path(self, truncation):
        if not self.cache_dir:
            return None
        size = f"{self.standing_batches}x{self.config.sample.standing_stats_batch_size}"
        return os.path.join(self.cache_dir, f"standing_stats_t{truncation or 0:g}_{size}.npz")

    def pending_standing_samples(self, truncation) -> int:
        """Training-mode samples `prepare(truncation)` would first run (0: none, or already
        cached)."""
        if self.bn_stats != "standing":
            return 0
        path = self._standing_cache_path(truncation)
        if path and storage.exists(path):
            return 0
        return self.standing_batches * int(self.config.sample.standing_stats_batch_size)

    def prepare(self, truncation):
        """Set G's BN statistics for `truncation` (table row, stored, or cached standing
        statistics)."""
        if self.released and truncation is None:
            truncation = 1.0  # the TF Hub modules' untruncated default
        if self._stats_for == (truncation,):
            return
        self.check_truncation(truncation)
        if self.bn_stats == "truncation_table":
            apply_truncation_stats(
                self.generator, self.truncation_stats, truncation, self.truncation_table
            )
        elif self.bn_stats == "standing":
            path = self._standing_cache_path(truncation)
            if path and storage.exists(path):
                stats = storage.load_npz(path)
            else:
                stats = standing_stats(
                    self.generator,
                    num_batches=self.standing_batches,
                    batch_size=self.config.sample.standing_stats_batch_size,
                    rng=jax.random.key(12345),
                    truncation=truncation,
                    progress=self.progress,
                    mesh=self.mesh,
                    released=self.released,
                    latent=self.latent,
                )
                if path and jax.process_index() == 0:
                    storage.save_npz(path, **stats)  # written whole: a reader never sees part of it
            apply_bn_stats(self.generator, stats)
        self._stats_for = (truncation,)

    def generate(self, z, y, truncation=None, batch_size=64):
        """Images (N, H, W, 3) float32 in [-1, 1] for given latents and classes (indices or class
        vectors).

        Each batch is sharded over the sampler's devices (padded to a multiple of their number; G's
        evaluation forward is per sample, so the padding changes nothing else)."""
        self.prepare(truncation)
        graphdef, state = nnx.split(self.generator)
        # Statistics written by prepare() may sit on one device: replicate (a no-op for the rest).
        state = jax.device_put(state, sharding.replicated(self.mesh))
        outs = []
        for i in range(0, len(z), batch_size):
            (zb, yb), num = sharding.shard_padded(
                self.mesh, z[i : i + batch_size], y[i : i + batch_size]
            )
            outs.append(np.asarray(_eval_forward(graphdef, self.mesh, state, zb, yb))[:num])
        return np.concatenate(outs)

    def latents(self, num, *, truncation=None, seed=0):
        """The z `sample` draws for `seed` (the model's convention: see the module docstring)."""
        self.check_truncation(truncation)
        kz, _ = jax.random.split(jax.random.key(seed))
        return np.asarray(
            sample_latents(
                kz,
                num,
                self.generator.dim_z,
                truncation,
                released=self.released,
                latent=self.latent,
            )
        )

    def check_latents(self, latents):
        z = np.asarray(latents, np.float32)
        if z.ndim != 2 or z.shape[1] != self.generator.dim_z:
            raise ValueError(
                f"latents have shape {z.shape}; expected (n, {self.generator.dim_z}) for this model's "
                f"dim_z={self.generator.dim_z}"
            )
        return z

    def labels(self, num, *, seed=0, classes=None):
        """Class indices (num,): `classes` repeated, or uniform draws for `seed`."""
        _, ky = jax.random.split(jax.random.key(seed))
        if not self.num_classes:
            if classes is not None and len(classes):
                raise ValueError(
                    "this model is unconditional (model.num_classes=0): sample it without classes"
                )
            return np.zeros(num, np.int32)
        if classes is None or len(classes) == 0:
            return np.asarray(jax.random.randint(ky, (num,), 0, self.num_classes))
        y = np.resize(np.asarray(classes, np.int32), num)
        bad = [int(c) for c in np.ravel(y) if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(
                f"class index {bad[0]} is outside [0, {self.num_classes}); valid: 0..{self.num_classes - 1}"
            )
        return y

    def sample(self, num, *, truncation=None, seed=0, batch_size=64, classes=None, latents=None):
        z = (
            self.check_latents(latents)
            if latents is not None
            else self.latents(num, truncation=truncation, seed=seed)
        )
        y = self.labels(len(z), seed=seed, classes=classes)
        return self.generate(z, y, truncation, batch_size)


def load_sampler(directory, **kw) -> Sampler:
    """A sampler for an exported generator (biggan.sampling.export, e.g. converted released weights)
    or for the latest checkpoint of a training workdir (its EMA generator)."""
    if export.is_exported_generator(directory):
        config, generator, truncation_stats = export.load_generator(directory)
        return Sampler(
            config, generator, truncation_stats=truncation_stats, cache_dir=directory, **kw
        )
    if storage.isdir(os.path.join(directory, "checkpoints")):
        config, generator, step = checkpoints.load_ema_generator(directory)
        # Multi-process: every process takes part in the restore, which yields arrays replicated
        # over all processes' devices; the Sampler keeps this process's copy, so sampling stays
        # inside it.
        return Sampler(
            config,
            generator,
            cache_dir=os.path.join(directory, "standing_stats", f"step_{step}"),
            **kw,
        )
    if storage.exists(os.path.join(directory, "saved_model.pb")):
        raise FileNotFoundError(
            f"{directory} is a TF Hub module, not an export: convert it first with "
            f"`python -m biggan.convert tfhub {directory} --out OUT` and sample OUT"
        )
    raise FileNotFoundError(
        f"{directory} is neither an exported generator (config.json + generator/) nor a "
        f"training workdir (checkpoints/); pass the --out of biggan.convert or a train.py --workdir"
    )
