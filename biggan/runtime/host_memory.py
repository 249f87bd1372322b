"""Host allocator policy for runs on the CPU backend: keep freed memory instead of giving it back.

XLA:CPU allocates each step's large temporaries with malloc. glibc serves requests above its mmap
threshold (at most 32 MiB) with fresh mmaps, gives freed heap back to the OS, and gives every thread
its own arena, so each step touches new pages: on the 2-core machine of BUILD_NOTES one BigGAN-128
train step took ~4.1 million page faults in ~33 s. With one arena, no mmap and no trimming it took
~0.37 million in ~23 s (`python bench/profile_ops.py train_step` counts them;
`BIGGAN_HOST_MALLOC=default` gives glibc's own). PyTorch pays the same cost under the same
allocator; bench/train_step.py and bench/sample.py time both implementations under both policies.

`mallopt` settings only change where memory comes from, never a computed value. They must be set
before JAX starts its backend threads (each thread picks its arena on first use), so entry points
call `retain_freed_memory()` first thing. Accelerator runs keep glibc's defaults: their big buffers
live on the device, and one arena would serialise the input pipeline's host threads.

`BIGGAN_HOST_MALLOC=retain|default` overrides the automatic choice (retain when the CPU is the only
platform JAX can use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import logging
import os
import sys

# glibc <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8

ENV = "BIGGAN_HOST_MALLOC"


def cpu_only() -> bool:
    """True when JAX can only use the CPU: JAX_PLATFORMS starts with cpu, or no accelerator plugin
    (a `jax_plugins` entry point, jax_cuda*/jax_rocm* plugin package or libtpu) is installed."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    if list(importlib.metadata.entry_points(group="jax_plugins")):
        return False
    return not any(
        importlib.util.find_spec(m)
        for m in (
            "libtpu",
            "jax_cuda12_plugin",
            "jax_cuda13_plugin",
            "jax_rocm60_plugin",
            "jax_rocm7_plugin",
        )
    )


def _backend_started() -> bool:
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(xla_bridge is not None and getattr(xla_bridge, "_backends", None))


def retain_freed_memory() -> bool:
    """Apply the policy of the module docstring; True when it was applied."""
    choice = os.environ.get(ENV, "auto").strip().lower()
    if choice not in ("auto", "retain", "default"):
        raise ValueError(f"{ENV}={choice!r}: expected 'retain', 'default' or unset (automatic)")
    if choice == "default" or (choice == "auto" and not cpu_only()):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    if _backend_started():
        logging.warning(
            "%s: JAX's backend already started; its threads keep their own malloc arenas, so "
            "call host_memory.retain_freed_memory() before the first JAX computation",
            ENV,
        )
    # Arena count first: threads that have not allocated yet then share the main (brk) arena.
    # mallopt takes an int; -1 converts to SIZE_MAX in glibc, i.e. never trim.
    ok = mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, -1)
    return bool(ok)
