#!/usr/bin/env python3
"""Instructions per request: an A/B of django-daphne against itself that the machine's
other load does not disturb, where bench/run.py's requests per second cannot tell 3% apart
from its run-to-run noise on a shared machine.

Each server runs under valgrind's callgrind, serving bench/app.py; after a warm-up its
counters are zeroed (``callgrind_control -z``), a fixed load goes through one connection
(a request, or a message, at a time, so that the server reads and writes the same way
every run), and the instructions it executed meanwhile are divided by the requests (or
round trips) served.  Only the server's process is counted, its own startup left out.

    python bench/instructions.py                              # metrics off and on
    python bench/instructions.py --workloads keepalive --baseline 7a0f876
    python bench/instructions.py --variants off --workloads ws-echo,h2c

Variants: ``off`` (the plain server), ``on`` (--metrics-endpoint), and with ``--baseline REV``
the plain server as it was at REV (checked out in a temporary git worktree).  Under
callgrind a process runs some 50 times slower, so what the server does once a second (the
metrics' fold) weighs about 50 times more per request than it does at full speed:
``--no-fold`` leaves the fold out of ``on``, for the cost the requests themselves carry.

Needs valgrind (Debian's ``valgrind``: callgrind and callgrind_control), h2load
(``nghttp2-client``) and curl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("keepalive", "ws-echo", "h2c")
# the fixed load: requests (keepalive, h2c), or seconds of round trips (ws-echo)
LOADS = {"keepalive": 8000, "ws-echo": 6, "h2c": 6000}
NO_FOLD = (  # run in place of `python -m django_daphne`: the server with a fold that does nothing
    "import sys\n"
    "from django_daphne.server import metrics\n"
    "metrics.ProcessMetrics.fold = lambda self: None\n"
    "from django_daphne.server.cli import main\n"
    "sys.argv[0] = 'daphne'\n"
    "sys.exit(main())\n"
)


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_serving(port: int, process: subprocess.Popen) -> None:
    for _ in range(600):  # (a server under callgrind takes seconds to start)
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"],
                          check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit("the server did not answer within two minutes")


def load(workload: str, port: int, amount: int) -> int:
    """Run the fixed load; the requests or round trips served."""
    if workload == "keepalive":
        command = ["h2load", "--h1", "-n", str(amount), "-c", "1", "-t", "1",
                   f"http://127.0.0.1:{port}/"]
    elif workload == "h2c":
        command = ["h2load", "-n", str(amount), "-c", "1", "-m", "1",
                   f"http://127.0.0.1:{port}/"]
    else:
        command = [python(), str(ROOT / "bench" / "wsload.py"), "echo", "--port", str(port),
                   "--connections", "1", "--duration", str(amount)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    if workload == "ws-echo":
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        return int(json.loads(line[len("RESULT "):])["round_trips"])
    match = re.search(r"(\d+) succeeded", done.stdout)
    if not match or int(match.group(1)) != amount:
        raise SystemExit(f"h2load did not complete every request:\n{done.stdout}")
    return amount


def measure(tree: Path, workload: str, metrics: bool, fold: bool, amount: int,
            scratch: Path) -> tuple[int, int]:
    """(instructions, units) of one server run."""
    port = free_port()
    out = scratch / f"callgrind.{time.monotonic_ns()}"
    argv = ["-v", "0", "-b", "127.0.0.1", "-p", str(port)]
    if metrics:
        argv += ["--metrics-endpoint", "127.0.0.1:0"]
    entry = ["-c", NO_FOLD] if metrics and not fold else ["-m", "django_daphne"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "-q",
         python(), *entry, *argv, "bench.app:app"],
        cwd=tree, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_serving(port, process)
        subprocess.run(["h2load", "--h1", "-n", "2000", "-c", "10", "-t", "1",
                        f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(process.pid)], capture_output=True,
                       check=True)
        units = load(workload, port, amount)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], capture_output=True,
                       check=True)
    finally:
        process.terminate()
        process.wait(120)
    # the dump after the zeroing: the file with the part number 1
    dump = Path(f"{out}.{process.pid}.1")
    text = dump.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no total in {dump}")
    return int(match.group(1)), units


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Instructions per request (callgrind) of django-daphne's variants, "
                    "side by side: an A/B that other load on the machine does not disturb.")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"Comma-separated, of {', '.join(WORKLOADS)} (default: all).")
    parser.add_argument("--variants", default="off,on",
                        help="Comma-separated, of off (plain), on (--metrics-endpoint); "
                             "default off,on.")
    parser.add_argument("--baseline", metavar="REV",
                        help="Also the plain server at this git revision (a worktree).")
    parser.add_argument("--no-fold", action="store_true",
                        help="Leave the metrics' once-a-second fold out of 'on' (see above).")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="Multiply the fixed loads (8000 requests, 6 s, 6000 requests).")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "h2load", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (see the module docstring)")
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(sorted(unknown))}: expected "
                         f"{', '.join(WORKLOADS)}")
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - {"off", "on"}:
        raise SystemExit("--variants: expected off and/or on")
    with tempfile.TemporaryDirectory(prefix="dd-instructions-") as scratch_name:
        scratch = Path(scratch_name)
        trees = [(variant, ROOT, variant == "on") for variant in variants]
        if args.baseline:
            worktree = scratch / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(worktree), args.baseline], check=True)
            trees.append((f"@{args.baseline}", worktree, False))
        try:
            rows = []
            for workload in workloads:
                amount = max(1, round(LOADS[workload] * args.scale))
                for name, tree, metrics in trees:
                    instructions, units = measure(tree, workload, metrics,
                                                  not args.no_fold, amount, scratch)
                    rows.append((workload, name, instructions / units, units))
                    print(f"{workload:10s} {name:12s} {instructions / units:10,.0f} "
                          f"instructions per {'round trip' if workload == 'ws-echo' else 'request'}"
                          f" ({units} served)", flush=True)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(scratch / "baseline")], check=False)
    print()
    print("| workload | " + " | ".join(name for name, _, _ in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for workload in workloads:
        cells = {name: per for w, name, per, _ in rows if w == workload}
        first = cells[trees[0][0]]
        shown = [f"{cells[name]:,.0f}" + ("" if name == trees[0][0]
                                          else f" ({cells[name] / first - 1:+.1%})")
                 for name, _, _ in trees]
        print(f"| {workload} | " + " | ".join(shown) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
