"""`python -m biggan.convert biggan-pytorch` (ajbrock/BigGAN-PyTorch, BigGAN.py): BigGAN-PyTorch's
BigGAN G state dict.

The reference is an independent functional torch re-statement of BigGAN-PyTorch's evaluation forward
(BigGAN.py Generator.forward, layers.py SN/ccbn/bn/GBlock/Attention), reading the state dict by the
key names of that code; it records which keys it reads, so a key the converter expects but the real
code does not have (or the reverse) fails the test.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


from biggan import config as cfg  # noqa: E402
from biggan.convert import biggan_pytorch
from biggan.convert import cli as convert_cli
from biggan.convert import tables as convert_tables
from biggan.sampling import export


class Reference:
    """BigGAN-PyTorch G in eval mode (G_ema sampling), from its source: SN runs one power-iteration
    step from the stored u0 without storing it; BNs use stored_mean/stored_var."""

    def __init__(self, sd, *, resolution, ch, hier, attn, bn_eps=1e-5, sn_eps=1e-6):
        self.sd, self.used = sd, set()
        self.bn_eps, self.sn_eps = bn_eps, sn_eps
        mult = {
            32: [4, 4, 4, 4],
            64: [16, 16, 8, 4, 2],
            128: [16, 16, 8, 4, 2, 1],
            256: [16, 16, 8, 8, 4, 2, 1],
        }[resolution]
        self.n_blocks = len(mult) - 1
        self.attn_blocks = {i for i in range(self.n_blocks) if 8 * 2**i in attn}
        self.hier = hier
        self.calibrating = False

    def get(self, key):
        self.used.add(key)
        return self.sd[key]

    def W_(self, prefix):
        # layers.SN.W_ with num_svs=1, num_itrs=1, update=False (eval): power_iteration then W / sv.
        W = self.get(prefix + ".weight")
        self.get(prefix + ".sv0")  # logging buffer, part of the state dict
        W_mat = W.view(W.size(0), -1)
        u = self.get(prefix + ".u0")
        v = F.normalize(torch.matmul(u, W_mat), eps=self.sn_eps)
        u = F.normalize(torch.matmul(v, W_mat.t()), eps=self.sn_eps)
        sv = torch.squeeze(torch.matmul(torch.matmul(v, W_mat.t()), u.t()))
        return W / sv

    def conv(self, x, prefix, padding):
        bias = self.get(prefix + ".bias") if prefix + ".bias" in self.sd else None
        return F.conv2d(x, self.W_(prefix), bias, padding=padding)

    def bn_mode(self):
        # Evaluation: stored statistics. Calibration (test set-up only): batch statistics, stored
        # with momentum 1, so that random weights give unsaturated images — BigGAN-PyTorch's
        # standing-stats idea.
        return (True, 1.0, self.bn_eps) if self.calibrating else (False, 0.1, self.bn_eps)

    def calibrate(self, z, labels):
        self.calibrating = True
        self(z, labels)
        self.calibrating = False

    def ccbn(self, x, y, prefix):
        gain = (1 + F.linear(y, self.W_(prefix + ".gain"))).view(y.size(0), -1, 1, 1)
        bias = F.linear(y, self.W_(prefix + ".bias")).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(
            x,
            self.get(prefix + ".stored_mean"),
            self.get(prefix + ".stored_var"),
            None,
            None,
            *self.bn_mode(),
        )
        return out * gain + bias

    def attention(self, x, prefix):
        b, c, h, w = x.shape
        theta = self.conv(x, prefix + ".theta", 0).view(-1, c // 8, h * w)
        phi = F.max_pool2d(self.conv(x, prefix + ".phi", 0), [2, 2]).view(-1, c // 8, h * w // 4)
        g = F.max_pool2d(self.conv(x, prefix + ".g", 0), [2, 2]).view(-1, c // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.conv(torch.bmm(g, beta.transpose(1, 2)).view(-1, c // 2, h, w), prefix + ".o", 0)
        return self.get(prefix + ".gamma") * o + x

    @torch.no_grad()
    def __call__(self, z, labels):
        y = self.get("shared.weight")[labels]  # G.shared(y): nn.Embedding, not SN
        if self.hier:
            zs = torch.split(z, z.shape[1] // (self.n_blocks + 1), 1)
            z, ys = zs[0], [torch.cat([y, item], 1) for item in zs[1:]]
        else:
            ys = [y] * self.n_blocks
        h = F.linear(z, self.W_("linear"), self.get("linear.bias"))
        h = h.view(h.size(0), -1, 4, 4)  # channel-major
        for i in range(self.n_blocks):
            p = f"blocks.{i}.0"
            x = h
            h = F.relu(self.ccbn(x, ys[i], p + ".bn1"))
            h, x = F.interpolate(h, scale_factor=2), F.interpolate(x, scale_factor=2)
            h = self.conv(h, p + ".conv1", 1)
            h = F.relu(self.ccbn(h, ys[i], p + ".bn2"))
            h = self.conv(h, p + ".conv2", 1)
            h = h + self.conv(x, p + ".conv_sc", 0)
            if i in self.attn_blocks:
                h = self.attention(h, f"blocks.{i}.1")
        h = F.batch_norm(
            h,
            self.get("output_layer.0.stored_mean"),
            self.get("output_layer.0.stored_var"),
            self.get("output_layer.0.gain"),
            self.get("output_layer.0.bias"),
            *self.bn_mode(),
        )
        h = self.conv(F.relu(h), "output_layer.2", 1)
        return torch.tanh(h).permute(0, 2, 3, 1).numpy()


def random_state_dict(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("stored_var"):
            sd[key] = torch.empty(shape).uniform_(0.5, 2.0, generator=g)
        elif key.endswith("stored_mean"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith(".gamma"):
            sd[key] = torch.tensor(0.5)
        elif key == "output_layer.0.gain":
            sd[key] = 1 + 0.2 * torch.randn(shape, generator=g)
        elif key.endswith("sv0"):
            sd[key] = torch.ones(shape)
        else:
            sd[key] = torch.randn(shape, generator=g)
    for key in shapes:
        if key.endswith(".u0"):
            # As in a trained model, u0 is close to W's top left singular vector (a random u0 makes
            # the one-step σ estimate too small and saturates the output), perturbed so the step
            # still matters.
            w = sd[key[:-3] + ".weight"]
            u = torch.linalg.svd(w.view(w.size(0), -1), full_matrices=False)[0][:, 0]
            sd[key] = (u + 0.05 * torch.randn(u.shape, generator=g)).view(1, -1)
    return sd


SMALL = dict(
    arch="biggan",
    resolution=128,
    ch_g=4,
    ch_d=4,
    dim_z=120,
    shared_dim=16,
    num_classes=10,
    g_attn=[64],
    hier=True,
    shared=True,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bp")
    (directory / "model.json").write_text(json.dumps(SMALL))
    config = biggan_pytorch.biggan_pytorch_config(str(directory / "model.json"))
    return directory, config, biggan_pytorch.biggan_pytorch_expected_shapes(config.model)


@pytest.mark.parametrize(
    "resolution,hier",
    [
        (32, True),
        (32, False),  # fast: 3 blocks
        pytest.param(128, True, marks=pytest.mark.slow),  # the released layout, channel width 4
    ],
)
def test_parity_with_independent_reference(tmp_path, resolution, hier):
    slots = {32: 4, 128: 6}[resolution]
    attn = 16 if resolution == 32 else 64
    model = dict(
        SMALL, resolution=resolution, hier=hier, dim_z=20 * slots if hier else 32, g_attn=[attn]
    )
    (tmp_path / "model.json").write_text(json.dumps(model))
    config = biggan_pytorch.biggan_pytorch_config(str(tmp_path / "model.json"))
    sd = random_state_dict(
        biggan_pytorch.biggan_pytorch_expected_shapes(config.model), seed=1 + hier
    )
    reference = Reference(sd, resolution=resolution, ch=4, hier=hier, attn=(attn,))
    g = torch.Generator().manual_seed(5)
    reference.calibrate(
        torch.randn(16, model["dim_z"], generator=g), torch.randint(0, 10, (16,), generator=g)
    )
    torch.save(sd, tmp_path / "G_ema.pth")
    out = str(tmp_path / "export")
    assert (
        convert_cli.main(
            [
                "biggan-pytorch",
                str(tmp_path / "G_ema.pth"),
                "--config",
                str(tmp_path / "model.json"),
                "--out",
                out,
            ]
        )
        == 0
    )
    our_config, G, stats = export.load_generator(out)
    assert stats is None
    m = our_config.model
    assert (m.sn_eval_mode, m.bn_eps, m.sn_eps, m.arch) == ("iterate", 1e-5, 1e-6, "biggan")

    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, m.dim_z)).astype(np.float32)
    y = np.array([0, 7, 9])
    expected = reference(torch.from_numpy(z), torch.from_numpy(y))
    # Every key of the state dict is read by the reference forward (sv0 included): the converter's
    # key set is exactly BigGAN-PyTorch's.
    assert reference.used == set(sd)
    assert expected.std() > 0.05 and np.mean(np.abs(expected) > 0.99) < 0.5
    ours = np.asarray(G(jnp.asarray(z), jnp.asarray(y), train=False))
    err = float(np.abs(ours - expected).max())
    print(f"BigGAN-PyTorch G ({resolution}², ch 4, hier={hier}) max |ours − reference| = {err:.2e}")
    assert err <= 1e-4


def test_released_128_key_table_counts_the_paper_parameters():
    # configs/biggan_128.py = the released BigGAN-PyTorch 128² model (ch 96, dim_z 120, shared 128,
    # attn 64).
    config = biggan_pytorch.biggan_pytorch_config("configs/biggan_128.py")
    shapes = biggan_pytorch.biggan_pytorch_expected_shapes(config.model)
    buffers = ("u0", "sv0", "stored_mean", "stored_var")
    n_params = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(buffers))
    assert n_params == 70_433_988  # BigGAN-PyTorch's own count for this model
    assert shapes["linear.weight"] == (16 * 96 * 16, 20) and shapes["shared.weight"] == (1000, 128)
    assert shapes["blocks.0.0.bn1.gain.weight"] == (1536, 148) and shapes["blocks.3.1.gamma"] == ()
    assert shapes["output_layer.2.u0"] == (1, 3)
    assert (
        config.model.sn_eval_mode == "iterate"
        and config.model.bn_eps == 1e-5
        and config.model.sn_eps == 1e-6
    )
    assert biggan_pytorch.biggan_pytorch_config(None).model.to_dict() == config.model.to_dict()


def test_rejects_missing_key_and_wrong_shape(small, tmp_path):
    directory, config, shapes = small
    sd = random_state_dict(shapes)
    del sd["blocks.2.0.bn2.stored_var"]
    sd["linear.weight"] = sd["linear.weight"].t().contiguous()
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(convert_tables.ConversionError) as err:
        biggan_pytorch.convert_biggan_pytorch_file(
            str(tmp_path / "bad.pth"), str(directory / "model.json"), str(tmp_path / "out")
        )
    message = str(err.value)
    assert "missing keys (1)" in message and "blocks.2.0.bn2.stored_var" in message
    assert "linear.weight: (20, 1024), expected (1024, 20)" in message
    assert not (tmp_path / "out").exists()


def test_config_errors(tmp_path):
    (tmp_path / "typo.json").write_text(json.dumps({"resolutoin": 128}))
    with pytest.raises(KeyError, match="resolution"):
        biggan_pytorch.biggan_pytorch_config(str(tmp_path / "typo.json"))
    (tmp_path / "deep.json").write_text(json.dumps({"arch": "biggan_deep"}))
    with pytest.raises(convert_tables.ConversionError, match="convert hf"):
        biggan_pytorch.biggan_pytorch_config(str(tmp_path / "deep.json"))
    # a whole config with a model section
    (tmp_path / "full.json").write_text(cfg.base_config().to_json())
    assert biggan_pytorch.biggan_pytorch_config(str(tmp_path / "full.json")).model.resolution == 128


def test_sample_cli_defaults_reproduce_eval_mode(tmp_path):
    """The user's path: convert a G_ema.pth and draw four images with sample.py's defaults.
    BigGAN-PyTorch's eval mode uses the stored statistics, so must we: no standing statistics,
    images equal its forward."""
    import os
    import subprocess
    import sys
    import time

    # ImageNet's classes, so the class list and names work
    model = dict(SMALL, num_classes=1000)
    (tmp_path / "model.json").write_text(json.dumps(model))
    config = biggan_pytorch.biggan_pytorch_config(str(tmp_path / "model.json"))
    sd = random_state_dict(biggan_pytorch.biggan_pytorch_expected_shapes(config.model), seed=3)
    reference = Reference(sd, resolution=128, ch=4, hier=True, attn=(64,))
    g = torch.Generator().manual_seed(7)
    reference.calibrate(
        torch.randn(16, 120, generator=g), torch.randint(0, 1000, (16,), generator=g)
    )
    torch.save(sd, tmp_path / "G_ema.pth")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = dict(capture_output=True, text=True, cwd=root)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "biggan.convert",
            "biggan-pytorch",
            str(tmp_path / "G_ema.pth"),
            "--config",
            str(tmp_path / "model.json"),
            "--out",
            str(tmp_path / "ckpt"),
        ],
        **run,
    )
    assert result.returncode == 0, result.stderr
    z = np.random.default_rng(0).standard_normal((4, 120)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "sample.py",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--latents",
            str(tmp_path / "z.npy"),
            "--classes",
            "1,207,980,999",
            "--output",
            str(tmp_path / "x.npy"),
            "--compile_cache=",
        ],
        **run,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "stored in the weights" in result.stderr and "standing statistics" not in result.stderr
    print(f"sample.py, 4 images at 128² (ch 4), cold compile: {elapsed:.1f} s")
    # the draw is a single evaluation forward (no accumulation), compile included
    assert elapsed < 60
    expected = reference(torch.from_numpy(z), torch.tensor([1, 207, 980, 999]))
    assert expected.std() > 0.05
    err = float(np.abs(np.load(tmp_path / "x.npy") - expected).max())
    print(f"sample.py vs BigGAN-PyTorch eval mode: max |diff| = {err:.2e}")
    assert err <= 1e-4
    # A state dict of another architecture: one line naming the right converter, exit status 2.
    ppb_like = {"generator.layers.0.bn_0.running_means": torch.zeros(51, 4)}
    torch.save(ppb_like, tmp_path / "deep.bin")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "biggan.convert",
            "biggan-pytorch",
            str(tmp_path / "deep.bin"),
            "--out",
            str(tmp_path / "bad"),
        ],
        **run,
    )
    assert (
        result.returncode == 2
        and "convert hf" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
