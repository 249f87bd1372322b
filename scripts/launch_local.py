r"""Run N cooperating JAX processes on this machine, each with simulated CPU devices (gloo collectives).

  python scripts/launch_local.py -n 2 --devices 4 -- train.py --config configs/digits.py:runlocal
  python scripts/launch_local.py -n 2 --pass_via=env -- -m some.module ARGS   # module calling
                                           # biggan.runtime.distributed.initialize(); no flags appended

Everything after `--` is the program and its arguments (a script path, or `-m module`); the launcher
appends --coordinator_address=localhost:PORT --num_processes=N --process_id=i --local_device_count=D
(the flags of train.py; see biggan/runtime/distributed.py) on a free port, or with --pass_via=env sets
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID instead (read by
biggan.runtime.distributed.initialize()). Each line of output is prefixed with `[i]`. When one process fails
the others are stopped at once and the launcher exits with its status: a multi-host job is only as
alive as its weakest member, and the survivors would otherwise wait in a collective until a timeout.
Multi-host on one machine: the same code path as a TPU pod or a Slurm job, to debug a pod config
before paying for one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks; a tiny race with other programs
    remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(devices: int) -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    # jax_num_cpu_devices (set by --local_device_count) must win over an inherited XLA_FLAGS device
    # count.
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pump(index: int, stream, out) -> None:
    broken = False
    for line in iter(stream.readline, b""):
        if broken:
            continue  # keep draining: a child blocked on a full pipe would hang the whole job
        try:
            out.write(f"[{index}] ".encode() + line)
            out.flush()
        except (BrokenPipeError, ValueError, OSError):
            broken = True
    stream.close()


def _stop(procs, grace: float = 5.0) -> None:
    """SIGTERM every live process group (the trainer saves and exits on it), then SIGKILL after
    `grace` s."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(
    program: list[str],
    num_processes: int,
    devices: int,
    *,
    port: int | None = None,
    pass_via: str = "flags",
    python: str = sys.executable,
    out=None,
    env: dict | None = None,
) -> int:
    """Start `python program... <multi-process flags>` N times; return 0 or the first failure's exit
    code.

    pass_via='flags' appends train.py's flags; 'env' sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
    and JAX_PROCESS_ID instead, for entry points without those flags that call
    biggan.runtime.distributed.initialize().
    """
    if pass_via not in ("flags", "env"):
        raise ValueError(f"pass_via={pass_via!r}; expected 'flags' or 'env'")
    if num_processes < 1 or devices < 1:
        raise ValueError(f"num_processes={num_processes}, devices={devices}; expected both >= 1")
    if not program:
        raise ValueError(
            "nothing to run: give the program after `--`, e.g. `-- train.py --config ...`"
        )
    out = out if out is not None else sys.stdout.buffer
    port = port or free_port()
    base_env = process_env(devices)
    base_env.update(env or {})
    procs, pumps = [], []
    for i in range(num_processes):
        cmd, proc_env = [python, *program], dict(base_env)
        if pass_via == "flags":
            cmd += [
                f"--coordinator_address=localhost:{port}",
                f"--num_processes={num_processes}",
                f"--process_id={i}",
                f"--local_device_count={devices}",
            ]
        else:
            proc_env.update(
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                JAX_NUM_PROCESSES=str(num_processes),
                JAX_PROCESS_ID=str(i),
            )
        # Own process group: stopping a process also stops whatever it started (data workers, ...).
        p = subprocess.Popen(
            cmd,
            env=proc_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(p)
        t = threading.Thread(target=_pump, args=(i, p.stdout, out), daemon=True)
        t.start()
        pumps.append(t)
    out.write(
        f"[launcher] {num_processes} processes x {devices} CPU devices, coordinator localhost:{port}: "
        f"{' '.join(program)}\n".encode()
    )
    out.flush()
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                out.write(
                    f"[launcher] process {i} exited with status {status}; stopping the others\n".encode()
                )
                out.flush()
                _stop(procs)
                break
            if all(c == 0 for c in codes):
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(procs)
        status = 130
    for t in pumps:
        t.join(timeout=5)
    return status


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [-n N] [--devices D] [--port P] -- PROGRAM [ARGS...]",
    )
    parser.add_argument("-n", "--num_processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=4, help="simulated CPU devices per process")
    parser.add_argument(
        "--port", type=int, default=None, help="coordinator port (default: a free one)"
    )
    parser.add_argument(
        "--pass_via",
        choices=("flags", "env"),
        default="flags",
        help="how each process learns its place: train.py's flags (default) or JAX_* "
        "environment variables (entry points that call biggan.runtime.distributed.initialize())",
    )
    if "--" in argv:
        ours, program = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    else:  # `launch_local.py -n 2 train.py --config ...`: our options first, then the program
        ours, program = [], argv
        while program and program[0].startswith("-") and program[0] != "-m":
            ours.append(program.pop(0))
            takes_value = ours[-1] in ("-n", "--num_processes", "--devices", "--port", "--pass_via")
            if takes_value and program:
                ours.append(program.pop(0))
    args = parser.parse_args(ours)
    if not program:
        parser.error(
            "nothing to run: give the program after `--`, e.g. `-- train.py --config configs/digits.py`"
        )
    return launch(program, args.num_processes, args.devices, port=args.port, pass_via=args.pass_via)


if __name__ == "__main__":
    sys.exit(main())
