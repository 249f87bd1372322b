"""JAX's persistent compilation cache, on by default for train.py, sample.py and biggan.evaluate: a
preempted or restarted job loads its compiled programs from disk instead of compiling them again.

Directory: the command's --compile_cache flag, else $JAX_COMPILATION_CACHE_DIR, else
~/.cache/biggan-jax/xla. `--compile_cache=` (empty) turns it off. Programs that compile in under a
second are not stored (JAX's default threshold): the cache holds the train step, G's forward, the
feature networks, not every small helper.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "biggan-jax", "xla")
HELP = (
    "persistent XLA compilation cache directory (default: $JAX_COMPILATION_CACHE_DIR or "
    f"{DEFAULT_DIR}); empty turns it off"
)


def enable(directory: str | None = None) -> str | None:
    """Use `directory` (None: the default above; '': off) as JAX's persistent compilation cache.
    Call before the first compilation. Returns the directory in use, or None when off."""
    if directory is None:
        directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIR
    if not directory:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory = os.path.abspath(os.path.expanduser(directory))
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", directory)
    log.info("persistent compilation cache: %s", directory)
    return directory
