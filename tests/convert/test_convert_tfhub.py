"""`python -m biggan.convert tfhub`: the six TF Hub BigGAN modules, read without TensorFlow.

Fixtures: tests/fixtures/tfhub/biggan-128 and biggan-deep-128 were written by TensorFlow 2.21 itself
(scripts/make_tfhub_fixtures.py) with seeded random values under the real variable names, at a small
width. The references below rebuild the same values from the seed with that script's numpy builders,
so they never read the module through our reader:

- BigGAN-deep: pytorch-pretrained-biggan 0.1.1's own TF→PyTorch conversion (`load_tf_weights_in_biggan`,
  with its TensorFlow calls answered from the rebuilt values) and its model, at t = 1.0, 0.4, 0.41, 0.3.
- BigGAN: a functional forward written from BigGAN-PyTorch's TFHub/biggan_v1.py (TF names, [z, embed]
  conditioning, HWC first linear, one SN power step from u0) with per-truncation statistics t = 0.02…1.00
  interpolated by numpy.interp, at t = 1.0 and two truncations between rows.
"""

import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from biggan.convert import cli as convert_cli
from biggan.convert import tables as convert_tables
from biggan.convert import tf_checkpoint, tfhub
from biggan.models import factory as models
from biggan.sampling import export, truncation_stats
from biggan.sampling import sampler as sampling

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tfhub")
_spec = importlib.util.spec_from_file_location(
    "make_tfhub_fixtures", os.path.join(ROOT, "scripts", "make_tfhub_fixtures.py")
)
builders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builders)
SEEDS = {"biggan": lambda res: res + 1, "biggan-deep": lambda res: res + 2}  # as in builders.main


def rebuilt(family, res):
    """(variables, [(mean, var)] per BN) exactly as the fixture script drew them."""
    build = builders.non_deep if family == "biggan" else builders.deep
    values, tables = build(res, seed=SEEDS[family](res))
    return values.variables, tables


def stack_constants(tables):
    """The tables as graph constants named as the fixture script names them (other stacks left
    out)."""
    flat = [t for pair in tables for t in pair]
    return {f"stack_{10 * (i // 4) + (1, 3, 6, 8)[i % 4]}": t for i, t in enumerate(flat)}


# ---------------------------------------------------------------------------------------------- reader


@pytest.mark.parametrize("family", ["biggan", "biggan-deep"])
def test_reader_returns_what_tensorflow_wrote(family):
    variables, tables = rebuilt(family, 128)
    module = os.path.join(FIXTURES, f"{family}-128")
    read = tf_checkpoint.read_variables(os.path.join(module, "variables", "variables"))
    assert sorted(read) == sorted(variables)
    for name, value in variables.items():
        assert read[name].dtype == np.asarray(value).dtype and read[name].shape == np.shape(
            value
        ), name
        if name.endswith(("/u0", "/u1")):
            # The rebuilt SN vectors are u / np.linalg.norm(u) in float32; the norm is BLAS's snrm2,
            # whose kernel (and so its rounding) depends on the CPU: an Intel Xeon rebuilds entries
            # 2 ulps off the fixture (written on an AMD EPYC). Summing n squares rounds the norm by
            # at most n·eps relative, and the division by one eps more: the bound, not a loosened
            # match (every other variable is compared bit for bit).
            np.testing.assert_allclose(
                read[name],
                value,
                rtol=(np.size(value) + 1) * np.finfo(np.float32).eps,
                atol=0,
                err_msg=name,
            )
            continue
        np.testing.assert_array_equal(read[name], value, err_msg=name)
    constants = tf_checkpoint.graph_constants(
        tf_checkpoint.read_graph_def(os.path.join(module, "saved_model.pb"))
    )
    for name, table in stack_constants(
        tables
    ).items():  # Const (deep) and Pack-of-Const (non-deep) nodes
        np.testing.assert_array_equal(constants[name], table, err_msg=name)


def test_reader_refuses_non_tensorflow_files(tmp_path):
    (tmp_path / "variables.index").write_bytes(b"not a table" * 10)
    with pytest.raises(tf_checkpoint.FormatError, match="not a TensorFlow checkpoint index"):
        tf_checkpoint.read_variables(str(tmp_path / "variables"))
    (tmp_path / "saved_model.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(tf_checkpoint.FormatError, match="not a SavedModel"):
        tf_checkpoint.read_graph_def(str(tmp_path / "saved_model.pb"))
    with pytest.raises(FileNotFoundError, match="variables.index"):
        tf_checkpoint.read_variables(str(tmp_path / "missing" / "variables"))


def test_protobuf_wire_reader_closed_form():
    # field 1 varint 150 (the protobuf docs' example 08 96 01), field 2 bytes "ab", field 5 fixed32
    # 1.
    assert tf_checkpoint.proto_fields(
        bytes([0x08, 0x96, 0x01, 0x12, 0x02, 0x61, 0x62, 0x2D, 1, 0, 0, 0])
    ) == [(1, 150), (2, b"ab"), (5, 1)]


# ------------------------------------------------------------------------------------ BigGAN-deep parity


def pytorch_pretrained_reference(monkeypatch, variables, tables):
    """pytorch-pretrained-biggan's BigGAN loaded by its own load_tf_weights_in_biggan from the
    rebuilt values."""
    ppb = pytest.importorskip("pytorch_pretrained_biggan")
    from pytorch_pretrained_biggan import convert_tf_to_pytorch as tf2pt

    fake_tf = types.ModuleType("tensorflow")
    fake_tf.train = types.SimpleNamespace(
        list_variables=lambda path: [(k, list(np.shape(v))) for k, v in sorted(variables.items())],
        load_variable=lambda path, name: np.asarray(variables[name]),
    )
    stats = [np.asarray(t) for pair in tables for t in pair]
    real_load = torch.load
    config = ppb.BigGANConfig(
        output_dim=128,
        z_dim=builders.DEEP_Z,
        class_embed_dim=builders.DEEP_Z,
        channel_width=builders.DEEP_CH,
        num_classes=builders.NUM_CLASSES,
        layers=builders.DEEP_LAYERS[128],
        attention_layer_position=8,
        eps=1e-4,
        n_stats=51,
    )
    # only while its loader runs (orbax probes for TensorFlow too)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorflow", fake_tf)
        patch.setattr(
            torch,
            "load",
            lambda path, *a, **k: stats if path == "stats.pt" else real_load(path, *a, **k),
        )
        model = tf2pt.load_tf_weights_in_biggan(
            ppb.BigGAN(config), config, "module", batch_norm_stats_path="stats.pt"
        )
    return model.eval()


def test_biggan_deep_parity_with_pytorch_pretrained_biggan(monkeypatch, tmp_path):
    variables, tables = rebuilt("biggan-deep", 128)
    reference = pytorch_pretrained_reference(monkeypatch, variables, tables)
    out = str(tmp_path / "export")
    assert convert_cli.main(["tfhub", os.path.join(FIXTURES, "biggan-deep-128"), "--out", out]) == 0
    config, G, stats = export.load_generator(out)
    assert (config.model.arch, config.model.resolution, config.model.ch_g) == (
        "biggan_deep",
        128,
        builders.DEEP_CH,
    )
    assert (
        config.sample.truncation_table == "pytorch_pretrained_biggan"
        and config.sample.latents == "tfhub"
    )
    sampler = sampling.load_sampler(out)
    y = np.array([0, 3, 9])
    for t in (1.0, 0.4, 0.41, 0.3):
        z = np.asarray(
            sampling.sample_latents(jax_key(int(t * 100)), 3, config.model.dim_z, t, released=True)
        )
        with torch.no_grad():
            one_hot = F.one_hot(torch.as_tensor(y), builders.NUM_CLASSES).float()
            expected = reference(torch.as_tensor(z.copy()), one_hot, t).permute(0, 2, 3, 1).numpy()
        assert expected.std() > 0.05 and np.mean(np.abs(expected) > 0.99) < 0.5
        ours = sampler.generate(z, y, t)
        err = float(np.abs(ours - expected).max())
        print(
            f"TF Hub biggan-deep-128 (ch {builders.DEEP_CH}) t={t}: max |ours − pytorch-pretrained-biggan| = {err:.2e}"
        )
        assert err <= 1e-4, t


def jax_key(seed):
    import jax

    return jax.random.key(seed)


# ----------------------------------------------------------------------------------------- BigGAN parity


class BigGANv1Reference:
    """BigGAN-PyTorch's TFHub/biggan_v1.py Generator forward, functional, on TF names and layouts
    (records the names it reads). SN: one power step from u0 (biggan_v1's _update_u_v) with
    TensorFlow's l2_normalize (x / sqrt(max(Σx², 1e-12)), the module's own op; biggan_v1's port adds
    1e-4 to the norm)."""

    def __init__(self, variables, tables, resolution, chunk, ema="/ema_b999900"):
        self.v, self.tables, self.ema, self.used = variables, list(tables), ema, set()
        self.plan, self.attention_before, _ = builders.NON_DEEP[resolution]
        self.chunk = chunk
        self.grid = 0.02 * np.arange(1, 51)

    def get(self, name):
        self.used.add(name)
        return torch.as_tensor(np.asarray(self.v[name]))

    def weight(self, prefix):
        w = self.get(f"{prefix}/w{self.ema}")
        w = w.permute(3, 2, 0, 1) if w.ndim == 4 else w.t()  # HWIO → OIHW; (in, out) → (out, in)
        w_mat = w.reshape(w.shape[0], -1).double()
        u = self.get(f"{prefix}/u0").reshape(-1).double()
        # a second tracked vector: read by the converter's key check, unused by σ
        self.get(f"{prefix}/u1")

        def l2(x):
            return x / torch.sqrt(torch.clamp((x * x).sum(), min=1e-12))

        v = l2(w_mat.t() @ u)
        u = l2(w_mat @ v)
        return (w.double() / (u @ (w_mat @ v))).float()

    def conv(self, x, prefix, bias=True):
        w = self.weight(prefix)
        b = self.get(f"{prefix}/b{self.ema}") if bias else None
        return F.conv2d(x, w, b, padding=w.shape[-1] // 2)

    def stats(self, t):
        mean, var = self.queue.pop(0)
        interp = lambda table: torch.as_tensor(
            np.array(
                [
                    np.interp(t, self.grid, table[:, c])  # noqa: E731
                    for c in range(table.shape[1])
                ],
                np.float32,
            )
        )
        return interp(mean), interp(var)

    def hyper_bn(self, x, cond, prefix, cross, t):
        mean, var = self.stats(t)
        for k in ("accumulated_mean", "accumulated_var", "accumulation_counter"):
            # accumulators: in the module, not used by its sampling
            self.get(f"{prefix}/{cross}/{k}")
        out = F.batch_norm(x, mean, var, eps=1e-4)
        gamma = (
            cond @ self.weight(f"{prefix}/{cross.replace('CrossReplicaBN', 'HyperBN')}/gamma").t()
            + 1
        )
        beta = cond @ self.weight(f"{prefix}/{cross.replace('CrossReplicaBN', 'HyperBN')}/beta").t()
        return gamma[:, :, None, None] * out + beta[:, :, None, None]

    def attention(self, x):
        b, c, h, w = x.shape
        theta = self.conv(x, "Generator/attention/theta", False).view(b, -1, h * w).permute(0, 2, 1)
        phi = F.max_pool2d(self.conv(x, "Generator/attention/phi", False), 2).view(
            b, -1, h * w // 4
        )
        attention = F.softmax(torch.bmm(theta, phi), -1)
        g = F.max_pool2d(self.conv(x, "Generator/attention/g", False), 2).view(b, -1, h * w // 4)
        attn_g = torch.bmm(g, attention.permute(0, 2, 1)).view(b, -1, h, w)
        return (
            self.get("Generator/attention/gamma" + self.ema)
            * self.conv(attn_g, "Generator/attention/o_conv", False)
            + x
        )

    @torch.no_grad()
    def __call__(self, z, y_one_hot, t):
        self.queue = list(self.tables)  # one (mean, var) per BN, consumed in forward order
        codes = torch.split(torch.as_tensor(z), self.chunk, 1)
        class_emb = torch.as_tensor(y_one_hot) @ self.get("linear/w" + self.ema)
        w = self.weight("Generator/G_Z/G_linear")
        out = F.linear(codes[0], w, self.get("Generator/G_Z/G_linear/b" + self.ema))
        out = out.view(-1, 4, 4, w.shape[0] // 16).permute(0, 3, 1, 2)  # HWC
        for i, code in enumerate(codes[1:]):
            if i == self.attention_before:
                out = self.attention(out)
            p = "Generator/GBlock" + (f"_{i}" if i else "")
            cond = torch.cat([code, class_emb], 1)  # TF Hub order: z first
            h = F.relu(self.hyper_bn(out, cond, p, "CrossReplicaBN", t))
            h = self.conv(F.interpolate(h, scale_factor=2), f"{p}/conv0")
            h = F.relu(self.hyper_bn(h, cond, p, "CrossReplicaBN_1", t))
            h = self.conv(h, f"{p}/conv1")
            out = h + self.conv(F.interpolate(out, scale_factor=2), f"{p}/conv_sc")
        mean, var = self.stats(t)
        for k in ("accumulated_mean", "accumulated_var", "accumulation_counter"):
            self.get(f"Generator/ScaledCrossReplicaBNbn/{k}")
        out = F.batch_norm(
            out,
            mean,
            var,
            self.get("Generator/ScaledCrossReplicaBN/gamma" + self.ema),
            self.get("Generator/ScaledCrossReplicaBN/beta" + self.ema),
            eps=1e-4,
        )
        out = self.conv(F.relu(out), "Generator/conv_2d")
        return torch.tanh(out).permute(0, 2, 3, 1).numpy()


def test_biggan_parity_with_biggan_v1_reference(tmp_path):
    variables, tables = rebuilt("biggan", 128)
    chunk = builders.NON_DEEP[128][2]
    reference = BigGANv1Reference(variables, tables, 128, chunk)
    out = str(tmp_path / "export")
    assert convert_cli.main(["tfhub", os.path.join(FIXTURES, "biggan-128"), "--out", out]) == 0
    config, G, stats = export.load_generator(out)
    m = config.model
    assert (
        m.arch,
        m.resolution,
        m.ch_g,
        m.dim_z,
        m.shared_dim,
        m.num_classes,
        tuple(m.g_attn),
    ) == ("biggan", 128, builders.CH, 6 * chunk, builders.SHARED, builders.NUM_CLASSES, (64,))
    assert config.sample.truncation_table == "tfhub_biggan"
    sampler = sampling.load_sampler(out)
    y = np.array([1, 4, 9])
    one_hot = np.eye(builders.NUM_CLASSES, dtype=np.float32)[y]
    for t in (1.0, 0.41, 0.55):  # 0.41 and 0.55 fall between the rows t = 0.40/0.42 and 0.54/0.56
        z = sampler.latents(3, truncation=t, seed=int(t * 100))
        expected = reference(z, one_hot, t)
        # The reference reads every variable of the module but the non-EMA twins (unused by
        # sampling).
        assert reference.used == {
            k for k in variables if "/ema_" in k or k.endswith(("/u0", "/u1")) or "accumulat" in k
        }
        assert expected.std() > 0.05 and np.mean(np.abs(expected) > 0.99) < 0.5
        ours = sampler.generate(z, y, t)
        err = float(np.abs(ours - expected).max())
        print(
            f"TF Hub biggan-128 (ch {builders.CH}) t={t}: max |ours − biggan_v1 reference| = {err:.2e}"
        )
        assert err <= 1e-4, t
        # The same forward through a one-hot class vector (the module's own input form).
        np.testing.assert_allclose(sampler.generate(z, one_hot, t), ours, atol=1e-5)


# --------------------------------------------------------------------- all six modules: names and shapes


@pytest.mark.parametrize("family", ["biggan", "biggan-deep"])
@pytest.mark.parametrize("res", [128, 256, 512])
def test_every_module_layout_is_detected_and_converted(family, res):
    variables, tables = rebuilt(family, res)
    config, G, stats = tfhub.convert_tfhub(variables, stack_constants(tables))
    assert config.model.resolution == res and config.model.arch == family.replace("-", "_")
    assert len(stats) == 2 * len(tables) and all(
        v.shape[0] == (50 if family == "biggan" else 51) for v in stats.values()
    )
    truncation_stats.check_stats_match(G, stats)


def full_size_config(family, res):
    """Our config for the real module at full width, from the shapes alone (no arrays allocated)."""
    ema = tfhub.TFHUB_EMA[family.replace("-", "_")]
    empty = lambda *shape: np.broadcast_to(np.float32(0), shape)  # noqa: E731
    blocks = (
        len(builders.NON_DEEP[res][0]) if family == "biggan" else len(builders.DEEP_LAYERS[res])
    )
    names = {f"Generator/GBlock{f'_{i}' if i else ''}/conv0/u0": empty(1) for i in range(blocks)}
    names["linear/w" + ema] = empty(1000, 128)
    if family == "biggan":
        names.update(
            {
                "Generator/G_Z/G_linear/u0": empty(1),
                "Generator/G_Z/G_linear/w" + ema: empty(
                    {128: 20, 256: 20, 512: 16}[res], 4 * 4 * 16 * 96
                ),
            }
        )
    else:
        names.update(
            {
                "Generator/GenZ/G_linear/u0": empty(1),
                "Generator/GenZ/G_linear/w" + ema: empty(256, 4 * 4 * 16 * 128),
            }
        )
    return tfhub.tfhub_model_config(names)


@pytest.mark.parametrize(
    "family,res,expected",
    [
        ("biggan", 128, 70_433_988),
        ("biggan", 256, 82_097_604),  # BigGAN-PyTorch's counts (tests/models/test_models.py)
        ("biggan-deep", 128, 50_388_609),
        ("biggan-deep", 256, 55_880_833),
        ("biggan-deep", 512, 56_163_905),
    ],
)
def test_full_size_module_tables_count_the_published_parameters(family, res, expected):
    config = full_size_config(family, res)
    assert (
        config.model.dim_z
        == {
            "biggan": {128: 120, 256: 140, 512: 128},
            "biggan-deep": {128: 128, 256: 128, 512: 128},
        }[family][res]
    )
    shapes = convert_tables.expected_shapes(tfhub.tfhub_layout(config), tfhub.tfhub_kinds(1e-4))
    assert sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith("/u0")) == expected
    assert models.count_params(G_abstract(config)) == expected


def G_abstract(config):
    from flax import nnx

    return nnx.eval_shape(lambda: models.make_generator(config.model, nnx.Rngs(0)))


def test_biggan_512_module_matches_our_512_generator():
    config = full_size_config("biggan", 512)
    shapes = convert_tables.expected_shapes(tfhub.tfhub_layout(config), tfhub.tfhub_kinds(1e-4))
    assert config.model.dim_z == 128 and tuple(config.model.g_attn) == (64,)
    assert sum(
        int(np.prod(s)) for k, s in shapes.items() if not k.endswith("/u0")
    ) == models.count_params(G_abstract(config))


# ------------------------------------------------------------------------------------------- refusals


def test_refuses_unknown_variables_missing_tables_and_other_files(tmp_path):
    variables, tables = rebuilt("biggan", 128)
    with pytest.raises(convert_tables.ConversionError, match=r"1 variable\(s\).*Generator/extra/w"):
        tfhub.convert_tfhub(
            {**variables, "Generator/extra/w": np.zeros(3, np.float32)}, stack_constants(tables)
        )
    broken = dict(variables)
    broken["Generator/GBlock_2/conv1/w/ema_b999900"] = broken[
        "Generator/GBlock_2/conv1/w/ema_b999900"
    ][:, :, :, :2]
    with pytest.raises(
        convert_tables.ConversionError,
        match=r"wrong shapes \(1\): Generator/GBlock_2/conv1/w/ema_b999900",
    ):
        tfhub.convert_tfhub(broken, stack_constants(tables))
    with pytest.raises(convert_tables.ConversionError, match="--standing_stats"):
        tfhub.convert_tfhub(variables, {})
    with pytest.raises(convert_tables.ConversionError, match="no Generator/G_Z/G_linear"):
        tfhub.convert_tfhub({"foo/w": np.zeros(2)}, {})
    # Without tables (--standing_stats) the export samples with standing statistics.
    config, G, stats = tfhub.convert_tfhub(variables, None)
    assert (
        stats is None and config.sample.bn_stats == "standing" and config.sample.latents == "tfhub"
    )
    # Command line: one line, exit status 2, nothing written.
    for args in (
        ["tfhub", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
        ["tfhub", os.path.join(FIXTURES, "biggan-128", "variables"), "--out", str(tmp_path / "o")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "biggan.convert", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
        assert not (tmp_path / "o").exists()


def test_sample_cli_on_converted_module_npz_and_standing_stats(tmp_path):
    out = str(tmp_path / "export")
    assert convert_cli.main(["tfhub", os.path.join(FIXTURES, "biggan-128"), "--out", out]) == 0
    npz = tmp_path / "x.npz"
    result = subprocess.run(
        [
            sys.executable,
            "sample.py",
            "--checkpoint",
            out,
            "--classes",
            "1,4",
            "--n",
            "2",
            "--truncation",
            "0.5",
            "--output",
            str(npz),
            "--compile_cache=",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "per-truncation table at t=0.5" in result.stderr and "standing" not in result.stderr
    saved = np.load(npz)
    assert saved["images"].shape == (2, 128, 128, 3) and saved["z"].shape == (2, 24)
    assert list(saved["classes"]) == [1, 4] and np.all(saved["truncation"] == np.float32(0.5))
    assert np.abs(saved["z"]).max() <= 2 * 0.5 + 1e-6  # z = t·truncnorm(−2, 2)
    # The npz reproduces its images through the Python API.
    sampler = sampling.load_sampler(out)
    np.testing.assert_allclose(
        sampler.generate(saved["z"], saved["classes"], 0.5), saved["images"], atol=1e-5
    )
    # Out-of-range truncation: one line, exit 2, before any work.
    result = subprocess.run(
        [sys.executable, "sample.py", "--checkpoint", out, "--truncation", "0.01"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        result.returncode == 2 and "0.02 ≤ t" in result.stderr and "Traceback" not in result.stderr
    )
    # --standing_stats N accumulates instead (announced), cached beside the export.
    result = subprocess.run(
        [
            sys.executable,
            "sample.py",
            "--checkpoint",
            out,
            "--n",
            "2",
            "--truncation",
            "0.5",
            "--standing_stats",
            "2",
            "--output",
            str(tmp_path / "s.png"),
            "--compile_cache=",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "standing statistics (paper appendix C.1), 2 batches" in result.stderr
    assert any(name.startswith("standing_stats_t0.5_2x") for name in os.listdir(out))


def test_evaluate_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    from biggan import evaluate

    out = str(tmp_path / "export")
    assert convert_cli.main(["tfhub", os.path.join(FIXTURES, "biggan-128"), "--out", out]) == 0
    cases = [
        (["score", "--checkpoint", str(tmp_path / "missing")], "no such directory"),
        (["score", "--checkpoint", out, "--moments", str(tmp_path / "m.npz")], "no such file"),
        (["score", "--checkpoint", out, "--truncation", "0.01"], "0.02 ≤ t"),
        (["sweep", "--checkpoint", out, "--truncations", "1:0.1:0.1"], "--truncations"),
        (["sweep", "--checkpoint", out, "--truncations", "0.01,0.5"], "0.02 ≤ t"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(argv + ["--compile_cache="])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err, (argv, err)
