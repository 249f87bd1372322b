"""Modules as committed at an older commit, executed against today's package: the bit-identity tests
compare today's step and models with them. Those sources import the flat modules of that time (`from
biggan import latents`, `biggan.techniques.catalogue`, …); while one executes, each old name stands
for today's module, or for a namespace of the modules its functions now live in."""

import importlib
import importlib.util
import os
import subprocess
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# old module -> today's modules holding its names (the move to subsystem packages)
OLD_MODULES = {
    "biggan.layers": ["biggan.models.layers"],
    "biggan.biggan": ["biggan.models.biggan"],
    "biggan.biggan_deep": ["biggan.models.biggan_deep"],
    "biggan.models": ["biggan.models.factory"],
    "biggan.losses": ["biggan.gan.losses"],
    "biggan.latents": ["biggan.gan.latents"],
    "biggan.regularisers": [
        "biggan.gan.regularisers",
        "biggan.techniques.penalties",
        "biggan.techniques.sigma0",
        "biggan.techniques.historical_averaging",
    ],
    "biggan.techniques.catalogue": [
        "biggan.models.layers",
        "biggan.techniques.feature_matching",
        "biggan.techniques.instance_noise",
        "biggan.techniques.replay",
        "biggan.techniques.pacgan",
        "biggan.techniques.dropout",
        "biggan.train.step",
    ],
    "biggan.sharding": ["biggan.runtime.sharding"],
    "biggan.storage": ["biggan.runtime.storage"],
}


def old_module(name: str):
    """The stand-in for old module `name`: today's module, or a namespace of today's modules'
    names."""
    modules = [importlib.import_module(m) for m in OLD_MODULES[name]]
    if len(modules) == 1:
        return modules[0]
    namespace = types.ModuleType(name)
    for module in reversed(modules):  # the first module's names win
        namespace.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return namespace


def load_module_at(commit: str, path: str, name: str):
    """The module at `path` as committed at `commit` (skips without the git history)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:{path}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git history with {path} at {commit[:8]} is not available")
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    # `from biggan import models` reads the package's attribute before sys.modules: both stand in.
    stand_ins = {old: old_module(old) for old in OLD_MODULES}
    saved_modules = {old: sys.modules.get(old) for old in stand_ins}
    parents = {old: importlib.import_module(old.rpartition(".")[0]) for old in stand_ins}
    missing = object()
    saved_attrs = {old: getattr(parents[old], old.rpartition(".")[2], missing) for old in stand_ins}
    for old, stand_in in stand_ins.items():
        sys.modules[old] = stand_in
        setattr(parents[old], old.rpartition(".")[2], stand_in)
    sys.modules[name] = module  # flax.struct dataclasses look their module up
    try:
        exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
        for old in stand_ins:
            if saved_modules[old] is None:
                del sys.modules[old]
            else:
                sys.modules[old] = saved_modules[old]
            if saved_attrs[old] is missing:
                delattr(parents[old], old.rpartition(".")[2])
            else:
                setattr(parents[old], old.rpartition(".")[2], saved_attrs[old])
    return module
