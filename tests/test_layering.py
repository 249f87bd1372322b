"""The package layering of BUILD_NOTES ("Layout and layering"): a module imports only from its own
package and the packages of earlier rows, function-local imports included; sampling and evaluation
never reach the train step, the techniques or the whole config schema that gathers their keys."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Bottom-up: each row may import from the rows before it (a top-level module is a row of its own).
LAYERS = [
    "runtime",  # storage, sharding, multi-process start-up, compile cache, host allocator
    "data",  # sources, cache, the input pipeline
    "core_config",  # every config key but the techniques', and the reading of a stored config.json
    "models",  # layers and the two architectures
    "gan",  # losses, latents, orthogonal regularisation and weight spectra
    "checkpoints",  # the orbax checkpoint format and the EMA generator read from it
    "techniques",  # one file per training technique, its config keys included
    # the whole schema (core_config's keys and the techniques'), config files and their checks
    "config",
    "sampling",  # sampler, truncation, exported generators, images
    "evaluation",  # metrics, feature networks, the evaluator, reports
    "train",  # state, step, loop, fine-tuning, collapse monitor
    "convert",  # released weights into exported generators, a BigGAN-PyTorch run into a workdir
    "evaluate",  # command: python -m biggan.evaluate
    "summary",  # command: python -m biggan.summary
    "ablate",  # command: python -m biggan.ablate
]
# Earlier rows that a row must still not import: what samples and scores never needs the training
# code.
FORBIDDEN = {
    "sampling": {"techniques", "config"},
    "evaluation": {"techniques", "config"},
    "convert": {"techniques"},
    "evaluate": {"techniques", "train"},
    "summary": {"techniques", "train"},
}


def layer_of(module: str) -> str:
    """'biggan.train.step' -> 'train'; 'biggan' -> 'biggan' (the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "biggan"


def imported_modules(source: str) -> set[str]:
    """Every biggan module a source names in an import statement, at any depth (function-local
    too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "biggan"}


def violations(module: str, source: str) -> list[str]:
    own = layer_of(module)
    if own == "biggan":  # the package's own __init__ imports nothing
        return [f"{module} imports {name}" for name in sorted(imported_modules(source))]
    rank = LAYERS.index(own)
    wrong = {}  # layer -> the most specific module named from it
    for name in sorted(imported_modules(source)):
        other = layer_of(name)
        if other == own or other not in LAYERS:
            continue
        if LAYERS.index(other) > rank or other in FORBIDDEN.get(own, ()):
            wrong[other] = max(wrong.get(other, name), name, key=len)
    return [
        f"{module} imports {name} ({own} may not import {other})" for other, name in wrong.items()
    ]


def package_modules():
    for path in sorted((ROOT / "biggan").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts).removesuffix(".__init__"), path.read_text()


def test_every_module_is_in_a_layer():
    missing = {layer_of(m) for m, _ in package_modules()} - set(LAYERS) - {"biggan"}
    assert not missing, f"add these to LAYERS (and to BUILD_NOTES' table): {sorted(missing)}"


def test_no_module_imports_from_a_later_layer():
    problems = [v for module, source in package_modules() for v in violations(module, source)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_later_or_forbidden_import_even_inside_a_function():
    local = "def f():\n    from biggan.train import step\n"
    assert violations("biggan.models.layers", local) == [
        "biggan.models.layers imports biggan.train.step (models may not import train)"
    ]
    assert violations("biggan.sampling.sampler", "from biggan.techniques import registry\n")
    assert not violations("biggan.train.loop", "from biggan.sampling import sampler\n")


def test_sampling_and_evaluation_import_no_train_step_or_technique():
    # biggan.config gathers the techniques' keys: the sampler reads stored configs with core_config
    # alone. (The converters and the evaluate/summary commands do load it: they read configs/*.py
    # files.)
    code = (
        "import sys, biggan.sampling.sampler, biggan.evaluation.evaluator;"
        "print(' '.join(m for m in sys.modules"
        " if m.startswith(('biggan.train', 'biggan.techniques')) or m == 'biggan.config'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""
