"""The JAX FID Inception against pytorch-fid's `fid_inception_v3()` network (random weights,
offline)."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biggan.evaluation import inception
from biggan.sampling.images import to_uint8

torch = pytest.importorskip("torch")


def _import_torchvision():
    """torchvision, tolerating a CUDA wheel next to CPU torch.

    PyPI's torchvision for torch 2.13.0 (0.28.0) is a CUDA build: its C ops (`_C.so`, needs
    libc10_cuda.so) cannot load next to the CPU torch wheel, and `import torchvision` then fails
    while registering meta/autograd kernels for those ops. pytorch-fid needs only torchvision's
    pure-Python Inception modules, so on that failure the two registration modules are stubbed out.
    """
    import sys
    import types

    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in list(sys.modules):
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import torchvision
    return torchvision


torchvision = _import_torchvision()
pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")


def _build_pytorch_fid_model():
    """pytorch-fid's InceptionV3([pool3], use_fid_inception=True) with random weights.

    The download inside fid_inception_v3() is patched out (its load_state_dict becomes a no-op), and
    the module fid_inception_v3() builds is captured so its `fc` (the 1008-way logits) can be used
    too.
    """
    captured = {}
    original_builder = pytorch_fid_inception.fid_inception_v3

    def capturing_builder():
        captured["net"] = original_builder()
        return captured["net"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(torchvision.models.inception.Inception3, "load_state_dict", lambda *a, **k: None)
        mp.setattr(pytorch_fid_inception, "fid_inception_v3", capturing_builder)
        torch.manual_seed(0)
        model = pytorch_fid_inception.InceptionV3([3], use_fid_inception=True)
    return model, captured["net"]


def _calibrate_batch_norms(model, full_net, images01):
    """Random BN affines, then running stats := batch stats of `images01`, so activations stay O(1)
    through the 94 conv layers (default init shrinks them to ~1e-20) and BN folding is exercised."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in full_net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * 0.4 - 0.2)
                module.momentum = 1.0
        full_net.fc.bias.copy_(torch.randn(full_net.fc.bias.shape, generator=generator))
        model.train()
        model(images01)
    model.eval()
    full_net.eval()


@pytest.fixture(scope="module")
def reference():
    model, full_net = _build_pytorch_fid_model()
    rng = np.random.default_rng(0)
    _calibrate_batch_norms(
        model, full_net, torch.from_numpy(rng.random((2, 3, 64, 64), np.float32))
    )
    state_dict = {k: v.detach().clone() for k, v in full_net.state_dict().items()}
    return model, full_net, state_dict


def test_state_dict_key_set_and_shapes_match_pytorch_fid(reference):
    _, _, state_dict = reference
    expected = inception.expected_state_dict_shapes()
    real_keys = {k for k in state_dict if not k.endswith("num_batches_tracked")}
    assert real_keys == set(expected)
    assert all(tuple(state_dict[k].shape) == shape for k, shape in expected.items())
    assert len(inception.CONV_TABLE) == 94


def test_loader_rejects_missing_unexpected_and_misshapen_keys(reference):
    _, _, state_dict = reference
    bad = dict(state_dict)
    del bad["Mixed_6b.branch7x7_2.bn.running_var"]
    bad["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    bad["fc.weight"] = torch.zeros(1000, 2048)
    with pytest.raises(ValueError) as error:
        inception.params_from_state_dict(bad)
    message = str(error.value)
    assert "Mixed_6b.branch7x7_2.bn.running_var" in message
    assert "AuxLogits.fc.weight" in message
    assert "fc.weight: got (1000, 2048), expected (1008, 2048)" in message


def test_missing_weights_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError) as error:
        inception.load_inception_params()
    message = str(error.value)
    assert "nowhere.pth" in message and inception.WEIGHTS_URL in message and "6726825d" in message


def test_checksum_is_verified(tmp_path, reference):
    path = tmp_path / inception.WEIGHTS_FILENAME
    torch.save(reference[2], path)
    assert not hashlib.sha256(path.read_bytes()).hexdigest().startswith("6726825d")
    with pytest.raises(ValueError, match="SHA-256"):
        inception.load_inception_params(path)


@pytest.mark.parametrize("size", [8, 32, 128, 512])
def test_resize_matches_torch_interpolate(size):
    x = np.random.default_rng(size).random((2, size, size + 3, 3), np.float32)
    ours = np.asarray(jax.jit(inception.resize_bilinear_like_torch, static_argnums=1)(x, 299))
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        size=(299, 299),
        mode="bilinear",
        align_corners=False,
    )
    theirs = theirs.permute(0, 2, 3, 1).numpy()
    # float32 rounding; a wrong convention is ~0.1 off
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_quantisation_is_round_half_up_and_clipped():
    x = jnp.asarray([-2.0, -1.0, -1.0 + 0.5 / 127.5, 0.0, 1.0, 3.0])
    np.testing.assert_array_equal(np.asarray(to_uint8(x)), [0, 0, 1, 128, 255, 255])
    # Data stored as uint8 and mapped to [-1, 1] as u8 / 127.5 - 1 (biggan.data) round-trips
    # exactly.
    u8 = np.arange(256, dtype=np.uint8)
    as_float = jnp.asarray(u8).astype(jnp.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(np.asarray(to_uint8(as_float)), u8)


@pytest.mark.slow
def test_jax_inception_equals_pytorch_fid(reference, tmp_path):
    """Float32, the full protocol: samples -> uint8 -> resize -> network, through the file
    loader."""
    model, full_net, state_dict = reference
    path = tmp_path / inception.WEIGHTS_FILENAME
    torch.save(state_dict, path)
    params = inception.load_inception_params(path, verify_checksum=False)

    # Samples as the generator gives them: float NHWC in [-1, 1], 64x64.
    samples = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    # pytorch-fid's view of the same samples: saved as uint8 PNG, read back with ToTensor (u8 /
    # 255).
    u8 = np.array(to_uint8(jnp.asarray(samples)))
    x01 = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        pool3_torch = model(x01)[0].flatten(1)
        logits_torch = full_net.fc(pool3_torch).numpy()
        # The reference's own float32 rounding error on this (random, ill-conditioned) network.
        pool3_torch64 = model.double()(x01.double())[0].flatten(1).numpy()
        model.float()
    pool3_torch = pool3_torch.numpy()

    out = jax.jit(inception.inception_apply)(params, inception.preprocess(jnp.asarray(samples)))
    pool3, logits = np.asarray(out["pool3"]), np.asarray(out["logits"])
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    scale = np.abs(pool3_torch).max()
    assert scale > 0.1  # the calibration kept activations O(1)
    torch_float32_error = np.abs(pool3_torch - pool3_torch64).max() / scale
    ours_error = np.abs(pool3 - pool3_torch).max() / scale
    # Deviation within float32 tolerance: below 5e-4 relative, and of the order of torch's own
    # float32 error (both are ~1e-4 here: 94 random layers amplify rounding; a real mismatch is
    # O(1)).
    assert ours_error < 5e-4 and ours_error < 3 * torch_float32_error + 1e-5, (
        ours_error,
        torch_float32_error,
    )
    np.testing.assert_allclose(logits, logits_torch, atol=5e-4 * np.abs(logits_torch).max(), rtol=0)
    unbiased = logits_torch - full_net.fc.bias.detach().numpy()
    np.testing.assert_allclose(
        np.asarray(out["logits_unbiased"]), unbiased, atol=5e-4 * np.abs(unbiased).max(), rtol=0
    )


@pytest.mark.slow
def test_jax_inception_equals_pytorch_fid_in_float64(reference):
    """Float64 on both sides removes rounding: the architectures agree to ~1e-12 (exactly the same
    function), which float32 alone cannot show at better than ~1e-4 on this random network. Input
    139x139 (already normalised, resize bypassed): every stage keeps a spatial extent >= 3, at a
    fifth of the cost of 299x299."""
    model, full_net, state_dict = reference
    x01 = torch.from_numpy(np.random.default_rng(3).random((2, 3, 40, 48))).double()
    with torch.no_grad():
        x_net = (
            2
            * torch.nn.functional.interpolate(
                x01, size=(139, 139), mode="bilinear", align_corners=False
            )
            - 1
        )
        model.double()
        model.resize_input = model.normalize_input = False
        try:
            pool3_torch = model(x_net)[0].flatten(1)
            logits_torch = full_net.fc.double()(pool3_torch).numpy()
        finally:
            model.float()
            full_net.float()
            model.resize_input = model.normalize_input = True
    pool3_torch = pool3_torch.numpy()

    jax.config.update("jax_enable_x64", True)
    try:
        params = inception.params_from_state_dict(state_dict, dtype=jnp.float64)
        out = inception.inception_apply(params, jnp.asarray(x_net.permute(0, 2, 3, 1).numpy()))
        pool3, logits = np.asarray(out["pool3"]), np.asarray(out["logits"])
    finally:
        jax.config.update("jax_enable_x64", False)
    assert pool3.dtype == np.float64
    np.testing.assert_allclose(pool3, pool3_torch, atol=1e-9 * np.abs(pool3_torch).max(), rtol=0)
    np.testing.assert_allclose(logits, logits_torch, atol=1e-9 * np.abs(logits_torch).max(), rtol=0)
