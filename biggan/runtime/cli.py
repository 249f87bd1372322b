"""The one command-line convention of train.py, sample.py and the `python -m biggan.…` commands.

Every command is an argparse parser from `parser()` (its --help lists every flag with its default; a
user error is one line and exit status 2, argparse's `error`). The flags every JAX command shares
are defined here once (`runtime_flags`: the multi-process job and the compile cache), and `start` is
the one start-up sequence they run before their first JAX computation.
"""

from __future__ import annotations

import argparse
import logging

from biggan.runtime import compile_cache, distributed, host_memory

log = logging.getLogger(__name__)


class HELP_FORMAT(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default in --help; the description as written (its usage examples keep their
    lines). Also for subcommands' parsers (`add_parser(..., formatter_class=cli.HELP_FORMAT)`)."""


def parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """A command's parser: --help shows each flag's default."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=HELP_FORMAT,
        **kwargs,
    )


def runtime_flags(*, multi_process: bool = True) -> argparse.ArgumentParser:
    """A parent parser (`parents=[...]`) with the shared flags: the compile cache and, for the
    commands that join a multi-process job (train.py, biggan.evaluate; scripts/launch_local.py
    appends them), the job's flags (default: the JAX_* / cluster environment, else one process;
    runtime/distributed.py)."""
    flags = argparse.ArgumentParser(add_help=False)
    if multi_process:
        group = flags.add_argument_group(
            "multi-process (default: the JAX_* / cluster environment, else one process)"
        )
        group.add_argument("--coordinator_address", default=None, help="host:port of process 0")
        group.add_argument("--num_processes", type=int, default=None, help="number of processes")
        group.add_argument("--process_id", type=int, default=None, help="index of this process")
        group.add_argument(
            "--local_device_count",
            type=int,
            default=None,
            help="CPU only: simulated devices in this process",
        )
        group.add_argument(
            "--initialization_timeout",
            type=int,
            default=120,
            help="seconds to wait for the coordinator",
        )
    flags.add_argument("--compile_cache", default=None, help=compile_cache.HELP)
    return flags


def start(args: argparse.Namespace) -> None:
    """The start-up every JAX command runs before its first JAX computation, in this order: the host
    allocator (CPU runs; before JAX starts its threads), the multi-process job (when the command has
    its flags), the persistent compilation cache."""
    if host_memory.retain_freed_memory():
        log.info("CPU run: malloc keeps freed memory (%s=default turns this off)", host_memory.ENV)
    if hasattr(args, "coordinator_address"):
        distributed.initialize(
            args.coordinator_address,
            args.num_processes,
            args.process_id,
            local_device_count=args.local_device_count,
            timeout=args.initialization_timeout,
        )
    compile_cache.enable(args.compile_cache)
