"""Unconditional BigGAN (model.num_classes = 0): G's batch norms conditioned on the z chunks alone
(plain BN without skip-z), D without the projection term; trained, sampled and scored through the
command lines."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biggan import config as cfg
from biggan.models import factory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def digits_model(**overrides):
    m = cfg.load_config_file(os.path.join(ROOT, "configs/digits.py")).model
    m.update(**overrides)
    return m


@pytest.mark.parametrize("hier", [True, False])
def test_parameters_lose_exactly_the_class_layers(hier):
    """Closed form: the unconditional G lacks the shared embedding (classes × shared_dim) and, in
    every conditional BN, the shared_dim input columns of its gain and bias projections (2 × C ×
    shared_dim); D lacks its projection embedding (classes × C_last)."""
    cond = digits_model(hier=hier)
    uncond = digits_model(hier=hier, num_classes=0)
    g_cond = factory.make_generator(cond, nnx.Rngs(0))
    g_uncond = factory.make_generator(uncond, nnx.Rngs(0))
    bn_channels = [
        block_bn.bn.mean.shape[0] for block in g_cond.blocks for block_bn in (block.bn1, block.bn2)
    ]
    expected = cond.num_classes * cond.shared_dim + sum(
        2 * c * cond.shared_dim for c in bn_channels
    )
    assert factory.count_params(g_cond) - factory.count_params(g_uncond) == expected
    d_cond = factory.make_discriminator(cond, nnx.Rngs(1))
    d_uncond = factory.make_discriminator(uncond, nnx.Rngs(1))
    assert factory.count_params(d_cond) - factory.count_params(d_uncond) == (
        cond.num_classes * d_cond.feature_dim
    )
    assert g_uncond.shared_embed is None and d_uncond.embed is None


@pytest.mark.parametrize("arch", ["biggan", "biggan_deep"])
def test_labels_do_not_change_an_unconditional_model(arch):
    m = digits_model(num_classes=0, arch=arch)
    if arch == "biggan_deep":
        m.update(resolution=128, ch_g=4, ch_d=4, g_attn=(), d_attn=(), dim_z=16, shared_dim=8)
    G, D = factory.make_generator(m, nnx.Rngs(0)), factory.make_discriminator(m, nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(0), (4, m.dim_z))
    images = G(z, jnp.zeros(4, jnp.int32), train=False)
    np.testing.assert_array_equal(images, G(z, jnp.array([0, 5, 7, 9]), train=False))
    np.testing.assert_array_equal(
        D(images, jnp.zeros(4, jnp.int32), train=False),
        D(images, jnp.array([1, 2, 3, 4]), train=False),
    )


def cli(*args):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )  # the smoke batch of 4
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )


def test_converting_released_weights_into_an_unconditional_config_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({}, tmp_path / "G_ema.pth")
    result = cli(
        "-m", "biggan.convert", "biggan-pytorch", str(tmp_path / "G_ema.pth"),
        "--config", "configs/digits.py:unconditional", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "BigGAN-PyTorch's BigGAN is class-conditional" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a smoke run with evaluation, sampling, scoring and a refused fine-tune (~2 min)
def test_unconditional_digits_train_sample_and_score_through_the_command_lines(tmp_path):
    workdir = str(tmp_path / "run")
    result = cli(
        "train.py", "--config", "configs/digits.py:unconditional,runlocal", "--workdir", workdir,
        "--config.log.eval_every=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "unconditional BigGAN, the data's labels are not used" in result.stderr
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    scored = [line for line in lines if "fid" in line]
    assert scored and np.isfinite(scored[-1]["fid"])
    assert not any("classifier_accuracy" in line for line in lines)  # no per-class output
    result = cli(
        "sample.py", "--checkpoint", workdir, "--n", "8", "--output", str(tmp_path / "x.npy")
    )
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "x.npy")
    assert images.shape == (8, 32, 32, 3) and images.std() > 0
    result = cli(
        "sample.py", "--checkpoint", workdir, "--classes", "3", "--output", str(tmp_path / "y.png")
    )
    assert result.returncode == 2 and "this model is unconditional" in result.stderr
    moments = str(tmp_path / "digits_moments.npz")
    assert (
        cli("-m", "biggan.evaluate", "moments", "--data", "digits", "--out", moments).returncode
        == 0
    )
    result = cli(
        "-m", "biggan.evaluate", "score", "--checkpoint", workdir, "--num_samples", "200",
        "--moments", moments,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout[result.stdout.index("{") :])
    assert np.isfinite(scores["fid"]) and "class_accuracy" not in scores
    # a conditional run cannot start from it: one line, status 2
    result = cli(
        "train.py", "--config", "configs/digits.py:runlocal", "--workdir", str(tmp_path / "ft"),
        f"--config.train.init_from={workdir}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "a class-conditional and an unconditional BigGAN do not share" in result.stderr
