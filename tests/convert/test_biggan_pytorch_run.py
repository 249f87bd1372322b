"""A whole BigGAN-PyTorch run (`python -m biggan.convert biggan-pytorch WEIGHTS_DIR --out WORKDIR`)
against the author's own code (tests/biggan_pytorch_reference.py: its BigGAN.py, utils.py,
train_fns.py, verbatim): its D forward, one full training step (`train_fns.GAN_training_function`),
continuing the run with train.py and sampling it with sample.py.

The reference run is configs/biggan_pytorch_128.py:runlocal (the released run's recipe at width 8,
10 classes, 128²), trained 2 iterations by its own training function on random images (so the Adam
states, EMA and SN vectors are not their initial values) and saved by its utils.save_weights.
"""

import copy
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import biggan_pytorch_reference as reference  # noqa: E402

from biggan import checkpoints  # noqa: E402
from biggan import config as cfg  # noqa: E402
from biggan.convert import biggan_pytorch_run as run  # noqa: E402
from biggan.data.preprocess import to_model_range  # noqa: E402
from biggan.train import state as train_state  # noqa: E402
from biggan.train import step as train_step  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/biggan_pytorch_128.py:runlocal"
MICRO = 2  # images per micro-batch


def parity_config():
    """The shipped smoke config with 2 D steps × 2 accumulations, orthogonal regularisation on and a
    short EMA, so one step exercises each part of GAN_training_function (its Adam settings stay the
    run's)."""
    c = cfg.load_config_file(os.path.join(ROOT, CONFIG))
    c.train.update(
        num_d_steps=2, num_accumulations=2, batch_size=2 * MICRO, ortho_beta=1e-4, ema_decay=0.9
    )
    return c


def random_batch(c, rng):
    t, r = c.train, c.model.resolution
    lead = (t.num_d_steps, t.num_accumulations, MICRO)
    return {
        "image": rng.integers(0, 256, lead + (r, r, 3), dtype=np.uint8),
        "label": rng.integers(0, c.model.num_classes, lead).astype(np.int32),
    }


def as_theirs(batch):
    """Its train(x, y): NCHW float images in [-1, 1] (our to_model_range), the micro-batches in
    order."""
    x = np.asarray(to_model_range(batch["image"]))
    x = x.reshape((-1,) + x.shape[-3:]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), batch["label"].reshape(-1)


def our_latents(c, key):
    """The z and y our train step draws from `key`, in the order it uses them (D steps ×
    accumulations, then G's accumulations): biggan/train/step.py train_step, d_update, g_update and
    sample_zy."""
    t, m = c.train, c.model
    d_rng, g_rng = jax.random.split(key)
    keys = [
        k
        for d_key in jax.random.split(d_rng, t.num_d_steps)
        for k in jax.random.split(d_key, t.num_accumulations)
    ]
    keys += list(jax.random.split(g_rng, t.num_accumulations))
    zs, ys = [], []
    for k in keys:
        kz, ky = jax.random.split(k)
        zs.append(np.array(jax.random.normal(kz, (MICRO, m.dim_z), jnp.float32)))
        ys.append(np.array(jax.random.randint(ky, (MICRO,), 0, m.num_classes)))
    return zs, ys


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Its run after 2 iterations ('before'), then one more iteration on our latents ('after'); its
    D's logits on a batch and its G_ema's eval-mode images, from the 'before' weights."""
    root = tmp_path_factory.mktemp("biggan_pytorch")
    c = parity_config()
    rng = np.random.default_rng(0)
    key = jax.random.key(7)
    with reference.imported() as modules:
        its = reference.Run(modules, c, batch_size=MICRO)
        for _ in range(2):
            its.step(*as_theirs(random_batch(c, rng)))
        before = its.save(str(root), "before")
        x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (4, 3, 128, 128)).astype("f4"))
        y = torch.tensor([0, 3, 7, 9])
        with torch.no_grad():
            d_logits = copy.deepcopy(its.D).train()(x, y)[:, 0].numpy()
            z = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 120)).astype("f4"))
            g_ema = copy.deepcopy(its.G_ema).eval()
            images = g_ema(z, g_ema.shared(y)).numpy()
        batch = random_batch(c, rng)
        its.feed_latents(*our_latents(c, key))
        its.step(*as_theirs(batch))
        after = its.save(str(root), "after")
    return dict(
        config=c, before=str(before), after=str(after), batch=batch, key=key, root=root,
        d_inputs=(x.numpy(), y.numpy()), d_logits=d_logits, z=z.numpy(), images=images,
    )  # fmt: skip


@pytest.mark.slow  # the reference run (~5 s) and D at 128²
def test_converted_d_equals_its_d(folders):
    c = folders["config"]
    state, _ = run.convert_run(folders["before"], c)
    mdl, _ = jax.eval_shape(lambda: train_state.init_state(c, jax.random.key(0)))
    D = train_state.merge(mdl.d_graphdef, state.d_params, state.d_state)
    x, y = folders["d_inputs"]
    ours = np.asarray(D(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y), train=True))
    assert np.abs(folders["d_logits"]).max() > 0.1  # a non-trivial output
    np.testing.assert_allclose(ours, folders["d_logits"], atol=1e-4, rtol=0)


def leaves_with_paths(tree):
    """[(path, array)]; nnx's `.value` suffix dropped: "['blocks'][0]['conv1']['bias']"."""
    return [
        (jax.tree_util.keystr(p).removesuffix(".value"), np.asarray(x))
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def ulp(x):
    return float(np.spacing(np.float32(np.max(np.abs(x)) if x.size else 0.0)))


@pytest.mark.slow  # one compile of the 128² step
def test_one_training_step_equals_gan_training_function(folders):
    """From the converted 'before' state, our step on its batch and latents lands on the converted
    'after' state: G, D, G_ema and both Adam states.

    Tolerances from float32 rounding. A gradient is a sum; in float32 a sum of N terms is off by
    about √N·2⁻²⁴ of the sum of |terms| (random-walk rounding), and the error passes through the L
    layers between a weight and the loss: relative error ρ = L·√N·2⁻²⁴, with N the largest
    per-weight sum (a micro-batch's positions at full resolution) and L the number of weight layers
    of G and D. Adam (β1 = 0) moves a parameter by lr·g/(√v̂ + ε) ≤ lr·A, A = √((1 − β2ᵗ)/(1 − β2))
    (v_t ≥ (1 − β2)·g_t²): a relative error ρ of g changes the move by at most lr·A·ρ. A parameter,
    EMA or moment is also rounded once more (an ulp of its largest element, 4 allowed for the few
    operations of the update).

    Biases that a batch norm follows (every G bias but the output convolution's) have an exactly
    zero gradient — BN subtracts the per-channel mean — so each implementation moves them by lr·(its
    rounding noise)/(its RMS), up to lr·A in either direction: they are held to 2·lr·A, and their
    moments (pure rounding noise) are not compared."""
    c = folders["config"]
    t = c.train
    assert t.beta1_g == t.beta1_d == 0.0  # the bound on Adam's move above assumes β1 = 0
    before, _ = run.convert_run(folders["before"], c)
    theirs, its_state = run.convert_run(folders["after"], c)
    mdl, _ = jax.eval_shape(lambda: train_state.init_state(c, jax.random.key(0)))
    step = jax.jit(train_step.make_train_step(c, mdl))
    before = before.replace(extras={})  # G_ema's buffers: for sampling, training drops them
    batch = {k: jnp.asarray(v) for k, v in folders["batch"].items()}
    ours, _ = step(before, batch, folders["key"])
    assert int(ours.step) == its_state["itr"] == 3

    num_layers = sum(
        name.endswith(("['kernel']", "['embedding']"))
        for tree in (ours.g_params, ours.d_params)
        for name, _ in leaves_with_paths(tree)
    )
    rho = num_layers * np.sqrt(MICRO * c.model.resolution**2) * 2.0**-24
    # Adam's step counts: G's one per iteration, D's num_d_steps
    counts = {"g": its_state["itr"], "d": its_state["itr"] * t.num_d_steps}
    adam_move = {k: np.sqrt((1 - t.beta2**n) / (1 - t.beta2)) for k, n in counts.items()}
    print(f"ρ = {rho:.2e} ({num_layers} layers), Adam's largest move {adam_move}·lr")

    def zero_gradient(name, field):
        in_g = field in ("g_params", "ema_params", "g_opt")
        return in_g and name.endswith("['bias']") and "output_conv" not in name

    worst = {}
    for field, lr in (("g_params", t.lr_g), ("ema_params", t.lr_g), ("d_params", t.lr_d)):
        net = "d" if field == "d_params" else "g"
        scale = (1 - t.ema_decay) if field == "ema_params" else 1.0
        before_leaves = dict(leaves_with_paths(getattr(before, field)))
        for (name, a), (_, b) in zip(
            leaves_with_paths(getattr(ours, field)), leaves_with_paths(getattr(theirs, field))
        ):
            moved = lr * adam_move[net] * scale
            bound = 2 * moved if zero_gradient(name, field) else 4 * ulp(b) + moved * rho
            diff = float(np.abs(a - b).max())
            assert diff <= bound, f"{field}{name}: |ours − theirs| {diff:.3g} > {bound:.3g}"
            if not zero_gradient(name, field):
                changed = float(np.abs(b - before_leaves[name]).max())
                worst[field] = max(worst.get(field, (0, 0)), (diff, changed))
    for field in ("g_opt", "d_opt"):
        for (name, a), (_, b) in zip(
            leaves_with_paths(getattr(ours, field)), leaves_with_paths(getattr(theirs, field))
        ):
            if name.endswith("count"):
                assert int(a) == int(b) == counts[field[0]], name
                continue
            if zero_gradient(name, field):
                continue
            # mu = g (β1 = 0); nu = β2·ν + (1 − β2)·g²: twice g's relative error
            relative = 2 * rho if ".nu" in name else rho
            bound = 4 * ulp(b) + relative * float(np.abs(b).max())
            diff = float(np.abs(a - b).max())
            assert diff <= bound, f"{field}{name}: |ours − theirs| {diff:.3g} > {bound:.3g}"
            worst[field] = max(worst.get(field, (0, 0)), (diff, float(np.abs(b).max())))
    for field, (diff, size) in worst.items():
        print(f"{field}: max |ours − theirs| {diff:.2e} (largest change or value {size:.2e})")
    # The SN vectors the step's forwards advanced (G's in both updates, D's in both): one more check
    # that the passes are the same ones, in the same order.
    for field in ("g_state", "d_state"):
        for (name, a), (_, b) in zip(
            leaves_with_paths(getattr(ours, field)), leaves_with_paths(getattr(theirs, field))
        ):
            if name.endswith("['u']"):
                assert float(np.abs(a - b).max()) <= 1e-5, f"{field}{name}"


def cli(*args):
    """A command line on one CPU device (the smoke config's micro-batch of 4 does not split over
    8)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900, env=env
    )


@pytest.mark.slow  # convert, sample (one 128² compile) and two steps of train.py (one compile)
def test_convert_sample_and_continue_through_the_command_lines(folders, tmp_path):
    workdir = str(tmp_path / "workdir")
    result = cli(
        "-m",
        "biggan.convert",
        "biggan-pytorch",
        folders["before"],
        "--config",
        CONFIG,
        "--out",
        workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "step 2" in result.stdout and "data stream starts afresh" in result.stdout
    # sample.py on the converted step: its G_ema in eval mode (stored statistics, its own SN
    # vectors)
    np.save(tmp_path / "z.npy", folders["z"])
    result = cli(
        "sample.py", "--checkpoint", workdir, "--latents", str(tmp_path / "z.npy"),
        "--classes", "0,3,7,9", "--output", str(tmp_path / "x.npy"), "--compile_cache=",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "x.npy")
    expected = folders["images"].transpose(0, 2, 3, 1)
    assert expected.std() > 0.05
    np.testing.assert_allclose(images, expected, atol=1e-4, rtol=0)
    # train.py continues the run: two more steps from its iteration 2
    result = cli(
        "train.py", "--config", CONFIG, "--workdir", workdir, "--config.train.num_steps=4",
        "--config.log.sample_every=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr and "data stream starts afresh" in result.stderr
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    lines = [line for line in lines if "d_loss" in line]  # the losses (beside the singular values)
    assert [line["step"] for line in lines] == [3, 4]
    assert all(np.isfinite(line["d_loss"]) and np.isfinite(line["g_loss"]) for line in lines)
    assert checkpoints.Checkpointer(workdir).all_steps() == [2, 4]  # log.checkpoint_every=2


def test_a_folder_that_is_not_a_biggan_pytorch_run_is_refused_in_one_line(tmp_path):
    for files, expected in (
        ((), "lacks G.pth, G_ema.pth, D.pth, G_optim.pth, D_optim.pth, state_dict.pth"),
        (("G_ema_copy0.pth", "G_copy0.pth"), "carry a suffix such as _copy0"),
        (("pytorch_model.bin",), "use `python -m biggan.convert hf`"),
        (("saved_model.pb",), "use `python -m biggan.convert tfhub`"),
    ):
        folder = tmp_path / f"case{len(files)}{files[:1]}"
        folder.mkdir()
        for name in files:
            (folder / name).write_bytes(b"")
        result = cli(
            "-m", "biggan.convert", "biggan-pytorch", str(folder), "--out", str(tmp_path / "o")
        )
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
        assert not (tmp_path / "o").exists()


@pytest.mark.slow  # reads the reference folder
def test_another_width_or_recipe_is_refused_in_one_line(folders, tmp_path):
    for flag, expected in (
        ("--config.model.ch_d=16", "the weights do not match BigGAN-PyTorch BigGAN D"),
        (
            "--config.train.lr_d=2e-4",
            "trained with train.lr_d=0.0004 but the config has train.lr_d=0.0002",
        ),
    ):
        config = tmp_path / "config.py"
        key, value = flag[len("--config.") :].split("=")
        config.write_text(
            "from biggan.convert.biggan_pytorch_run import released_run_config\n"
            "def get_config(arg=None):\n"
            "    c = released_run_config('runlocal')\n"
            f"    c.{key} = {value}\n"
            "    return c\n"
        )
        out = tmp_path / "out"
        result = cli(
            "-m", "biggan.convert", "biggan-pytorch", folders["before"], "--config", str(config),
            "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
        assert not out.exists()
