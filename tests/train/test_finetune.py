"""Fine-tuning (`train.init_from`, biggan/train/finetune.py) and FreezeD (`train.freeze_d_blocks`).

From released weights: pytorch-pretrained-biggan's layout with seeded random weights
(tests/convert/test_convert_hf.py's reference model), converted by `python -m biggan.convert hf`;
the run's first EMA generator draws exactly the converted release's images. From a training workdir
through train.py: the run starts at the source's weights and FreezeD keeps D's first blocks there
while everything else trains.
"""

import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from stepping import REPO, leaves, tiny_config, tiny_flags

from biggan import checkpoints
from biggan.models import factory as models
from biggan.runtime import sharding
from biggan.sampling import export
from biggan.techniques import freezed, registry
from biggan.train import finetune
from biggan.train import state as train_state

# --------------------------------------------------------------------------- FreezeD


def test_freezed_zeroes_the_updates_of_the_first_blocks():
    c = tiny_config(freeze_d_blocks=2)
    c.model.update(arch="biggan_deep", resolution=32, ch_d=4, num_classes=10, d_attn=(16,))
    (technique,) = registry.enabled(c)
    _, d_params, _ = nnx.split(models.make_discriminator(c.model, nnx.Rngs(0)), nnx.Param, ...)
    out = technique.d_updates(jax.tree.map(jnp.ones_like, d_params))

    def part(path):  # "blocks/1", "attention/1", "input_conv", "embed", ...
        top = freezed._key(path[0])
        return f"{top}/{freezed._key(path[1])}" if top in ("blocks", "attention") else top

    flat = jax.tree_util.tree_flatten_with_path(out)[0]
    zeroed = {part(path) for path, leaf in flat if not np.any(np.asarray(leaf))}
    kept = {part(path) for path, leaf in flat if np.all(np.asarray(leaf) == 1)}
    # BigGAN-deep's D at 32²: input convolution, blocks 0-5, attention after block 1 (16²), class
    # embedding, linear.
    assert zeroed == {"input_conv", "blocks/0", "blocks/1", "attention/1"}
    assert kept == {"blocks/2", "blocks/3", "blocks/4", "blocks/5", "embed", "linear"}
    c.train.freeze_d_blocks = 6
    with pytest.raises(
        ValueError, match=r"train.freeze_d_blocks=6 would freeze all 6 blocks of D; use at most 5"
    ):
        registry.enabled(c)[0].d_updates(d_params)


# --------------------------------------------------------------------------- from a converted release


@pytest.fixture(scope="module")
def converted_release(tmp_path_factory):
    pytest.importorskip("pytorch_pretrained_biggan")
    from references import reference_model, save_reference

    from biggan.convert import cli as convert_cli

    model, config = reference_model(128, 8, seed=5)
    directory = tmp_path_factory.mktemp("release")
    bin_path, config_path = save_reference(model, config, directory / "hf")
    out = str(directory / "export")
    assert convert_cli.main(["hf", bin_path, config_path, "--out", out]) == 0
    return out


@pytest.mark.slow  # builds BigGAN-deep-128 (ch 8) G and D twice (~40 s)
def test_first_images_are_the_release_s(converted_release, caplog):
    c = export.load_config(converted_release)
    c.train.init_from = converted_release
    mdl, _ = jax.eval_shape(lambda: train_state.init_state(c, jax.random.key(0)))
    state = finetune.initial_state(c, jax.random.key(0))
    _, release, _ = export.load_generator(converted_release)
    z = jax.random.normal(jax.random.key(1), (2, c.model.dim_z))
    y = jnp.asarray([3, 999])
    ours = nnx.merge(mdl.g_graphdef, state.ema_params, state.g_state)(z, y, train=False)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(release(z, y, train=False)))
    # G is the release too (the EMA starts equal to it), in separate buffers (the trainer donates
    # the state).
    for a, b in zip(leaves(state.g_params), leaves(state.ema_params)):
        np.testing.assert_array_equal(a, b)
    assert all(
        a is not b
        for a, b in zip(jax.tree.leaves(state.g_params), jax.tree.leaves(state.ema_params))
    )

    # Another class count: the class table starts from its initialisation, everything else is
    # loaded.
    c.model.num_classes = 10
    with caplog.at_level(logging.WARNING, logger="biggan.train.finetune"):
        ten = finetune.initial_state(c, jax.random.key(0))
    assert "has 1000 classes, this run 10" in caplog.text and "shared_embed" in caplog.text
    _, fresh = train_state.init_state(c, jax.random.key(0))
    flat = lambda tree: dict(nnx.to_flat_state(tree))  # noqa: E731
    loaded, initial, released = flat(ten.g_params), flat(fresh.g_params), flat(state.g_params)
    for path, value in loaded.items():
        expected = initial[path] if "shared_embed" in path else released[path]
        np.testing.assert_array_equal(
            np.asarray(value[...]), np.asarray(expected[...]), err_msg=str(path)
        )

    # Another model: one line naming the differing keys.
    c.model.num_classes = 1000
    c.model.rgb_channels = 3
    with pytest.raises(
        finetune.InitFromError,
        match=r"holds another model; differing model keys .* rgb_channels: 8 → 3",
    ):
        finetune.initial_state(c, jax.random.key(0))


def test_bad_init_from_and_switches_are_one_line_from_train_py(tmp_path):
    base = [
        sys.executable,
        "train.py",
        "--config",
        "configs/digits.py:runlocal",
        "--workdir",
        str(tmp_path / "run"),
        *tiny_flags(),
    ]
    for flag, message in (
        (f"--config.train.init_from={tmp_path}", "is neither a training workdir"),
        ("--config.train.ada_target=1.5", "train.ada_target=1.5"),
    ):
        proc = subprocess.run(base + [flag], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert message in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- from a workdir, through train.py


def restore(workdir, step):
    config = ml_collections.ConfigDict(
        json.loads(open(os.path.join(workdir, "config.json")).read())
    )
    ckpt = checkpoints.Checkpointer(str(workdir))
    state, _ = ckpt.restore(step, train_state.abstract_state(config, sharding.make_mesh()))
    ckpt.close()
    return state


@pytest.mark.slow  # two train.py runs of 2 tiny steps (~2 min)
def test_train_py_fine_tunes_a_workdir_with_freezed(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    base = [sys.executable, "train.py", "--config", "configs/digits.py:runlocal", *tiny_flags()]
    proc = subprocess.run(
        base + ["--workdir", str(source)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(
        base
        + [
            "--workdir",
            str(target),
            f"--config.train.init_from={source}",
            "--config.train.freeze_d_blocks=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"train.init_from: started from {source} (step 2)" in proc.stderr
    before, after = restore(source, 2), restore(target, 2)
    d_before, d_after = (
        dict(nnx.to_flat_state(before.d_params)),
        dict(nnx.to_flat_state(after.d_params)),
    )
    for path, value in d_after.items():
        same = np.array_equal(np.asarray(value[...]), np.asarray(d_before[path][...]))
        # frozen exactly; the rest trained
        assert same == (path[0] == "blocks" and path[1] < 2), path
    assert not np.array_equal(leaves(after.g_params)[0], leaves(before.g_params)[0])
    assert int(after.step) == 2  # a new run: its own step count from 0
