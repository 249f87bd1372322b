"""biggan/runtime/host_memory.py: the CPU allocator policy removes the per-step page faults it is
there for."""

import os
import subprocess
import sys

import pytest

from biggan.runtime import host_memory

_PROBE = r"""
import resource
from biggan.runtime import host_memory
applied = host_memory.retain_freed_memory()
import jax, jax.numpy as jnp
step = jax.jit(lambda x: (jnp.sin(x) @ x).sum())  # 64 MiB temporaries, above glibc's mmap threshold
x = jnp.ones((4096, 4096))
for _ in range(2):
    step(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step(x).block_until_ready()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _page_faults_per_call(policy):
    env = dict(os.environ, BIGGAN_HOST_MALLOC=policy, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    applied, faults = out.stdout.split()[-2:]
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_malloc_removes_most_page_faults_of_a_repeated_step():
    applied_default, faults_default = _page_faults_per_call("default")
    applied_retain, faults_retain = _page_faults_per_call("retain")
    assert (applied_default, applied_retain) == (False, True)
    # Each call of the default policy maps its 64 MiB buffers afresh (≥ 16k faults per buffer).
    assert faults_default > 16_000
    assert faults_retain < faults_default / 10, (faults_retain, faults_default)


def test_platform_detection_and_bad_setting(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert host_memory.cpu_only()
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert not host_memory.cpu_only()
    monkeypatch.setenv("BIGGAN_HOST_MALLOC", "default")
    assert host_memory.retain_freed_memory() is False
    monkeypatch.setenv("BIGGAN_HOST_MALLOC", "always")
    with pytest.raises(ValueError, match="BIGGAN_HOST_MALLOC='always'.*'retain', 'default'"):
        host_memory.retain_freed_memory()
