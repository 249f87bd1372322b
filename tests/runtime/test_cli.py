"""One command-line convention (biggan/runtime/cli.py): every command's --help gives each flag's
default, and a user error is one `PROG: error: ...` line with exit status 2, before any work."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMANDS = {
    "train.py": ["train.py"],
    "sample.py": ["sample.py"],
    "biggan.evaluate score": ["-m", "biggan.evaluate", "score"],
    "biggan.evaluate moments": ["-m", "biggan.evaluate", "moments"],
    "biggan.evaluate sweep": ["-m", "biggan.evaluate", "sweep"],
    "biggan.convert hf": ["-m", "biggan.convert", "hf"],
    "biggan.convert tfhub": ["-m", "biggan.convert", "tfhub"],
    "biggan.convert biggan-pytorch": ["-m", "biggan.convert", "biggan-pytorch"],
    "biggan.data build-cache": ["-m", "biggan.data", "build-cache"],
    "biggan.ablate": ["-m", "biggan.ablate"],
    "biggan.summary": ["-m", "biggan.summary"],
}
# The commands that run JAX share the compile-cache flag; those that join a multi-process job, its
# flags.
RUNTIME = {name for name in COMMANDS if name not in ("biggan.data build-cache", "biggan.summary")}
MULTI_PROCESS = {
    "train.py",
    "biggan.evaluate score",
    "biggan.evaluate moments",
    "biggan.evaluate sweep",
}


def run(args):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lists_every_flag_with_its_default_and_a_bad_flag_is_one_line_exit_2(name):
    out = run(COMMANDS[name] + ["--help"])
    assert out.returncode == 0, out.stderr
    # argparse's option list: a line per flag ("  --flag VALUE  help (default: x)"), help text may wrap.
    options = re.split(r"\n  (?=-)", out.stdout.split("options:", 1)[1])[1:]
    flags = [o for o in options if not o.startswith("-h, --help")]
    assert all("(default:" in " ".join(o.split()) for o in flags), [
        o.split()[0] for o in flags if "(default:" not in " ".join(o.split())
    ]
    assert ("--compile_cache" in out.stdout) == (name in RUNTIME)
    assert ("--coordinator_address" in out.stdout) == (name in MULTI_PROCESS)

    bad = run(COMMANDS[name] + ["--no_such_flag"])
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"\S.*: error: .*", last) and "Traceback" not in bad.stderr, bad.stderr
