#!/usr/bin/env python3
"""Benchmark django-daphne side by side with Daphne, Uvicorn, Hypercorn and Granian.

In one run on this machine, each server in turn (one process, access log off) serves the
same ASGI application, bench/app.py (or the example Django project), while a load generator
(wrk, h2load or bench/wsload.py) loads it from its own CPU.  Several rounds,
interleaved across servers so background noise falls on all of them alike; the median is
reported with each server's ratio to Daphne and to Uvicorn, as a Markdown table
(RESULTS.md), the raw figures (results.json) and a bar chart (results.png).

It installs nothing unless asked: ``--check`` lists what is needed, ``--setup`` creates
bench/.venv-peers with the peers (and matplotlib and py-spy) from PyPI.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `bench` as a package from the root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import report
from bench.servers import (
    NOT_BY_DEFAULT,
    PEERS_VENV,
    ROOT,
    SERVERS,
    ServerError,
    ServerProcess,
    baseline_spec,
    free_port,
    main_python,
    snapshot,
)
from bench.workloads import (
    WORKLOADS,
    Context,
    Measurement,
    machine_noise,
    raise_fd_limit,
    start_server,
)
from tests.certs import make_certificate  # the tests' throwaway CA

# Daphne speaks HTTP/2 over TLS only with Twisted's tls and http2 extras; Django and Channels
# serve the example project (pinned by --setup to the versions django-daphne runs with);
# Gunicorn with uvicorn-worker is the reload comparison of bench/reloads.py.
PEER_PACKAGES = ["daphne", "twisted[tls,http2]", "uvicorn[standard]", "hypercorn", "granian",
                 "gunicorn", "uvicorn-worker", "django", "channels", "channels-redis",
                 "matplotlib", "py-spy"]
APT_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client", "taskset": "util-linux",
                "redis-server": "redis-server"}
RESULTS_HEADER = """# Benchmark results

Written by `python bench/run.py` (how to run it: [README.md](README.md)).  The figures are from
one run on one machine; compare ratios within a run, not absolute numbers across machines.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.split("\n\n")[0] + " Writes RESULTS.md, results.json and "
        "results.png to --output.",
        epilog="Tiny smoke run: python bench/run.py --servers django-daphne "
        "--workloads keepalive --duration 1 --rounds 1 --warmup 0 --output /tmp/bench",
    )
    parser.add_argument("--setup", action="store_true",
                        help=f"Create {PEERS_VENV.relative_to(ROOT)} and pip install "
                        f"{' '.join(PEER_PACKAGES)} into it, then exit.")
    parser.add_argument("--check", action="store_true",
                        help="Say what the selected servers and workloads need and whether "
                        "it is there, then exit.")
    default_servers = ",".join(name for name in SERVERS if name not in NOT_BY_DEFAULT)
    parser.add_argument("--servers", default=default_servers,
                        help=f"Comma-separated servers to run. Default: {default_servers}; "
                        f"also {', '.join(sorted(NOT_BY_DEFAULT))} (django-daphne with "
                        "--metrics-endpoint, the cost of metrics).")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"Comma-separated workloads. Default: all, {','.join(WORKLOADS)} "
                        "(those not built yet print n/a).")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="Seconds of load per measurement (whole seconds). Default: 5.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Rounds per server and workload, interleaved across servers; "
                        "the median is reported. Default: 3.")
    parser.add_argument("--max-noise", type=float, default=0.15,
                        help="CPUs' worth of other processes' load above which a measurement "
                        "is taken again (the machine may be shared). Default: 0.15.")
    parser.add_argument("--retries", type=int, default=2,
                        help="How many times a noisy measurement is taken again; the least "
                        "noisy is kept. Default: 2.")
    parser.add_argument("--quiet-wait", type=float, default=10.0,
                        help="Seconds to wait, before each measurement, for other load to fall "
                        "under --max-noise (then measure anyway). Default: 10.")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="Seconds of keep-alive load after each server start, not "
                        "measured; 0 for none. Default: 1.")
    parser.add_argument("--output", type=Path, default=ROOT / "bench",
                        help="Directory for RESULTS.md, results.json and results.png. "
                        "Default: bench/ (an existing RESULTS.md keeps its text outside the "
                        "generated block).")
    parser.add_argument("--baseline", metavar="REV",
                        help="Also run django-daphne as it was at this commit, as a server of "
                        "its own (django-daphne@REV): an A/B of two versions in one run.")
    parser.add_argument("--no-chart", action="store_true", help="Do not draw results.png.")
    parser.add_argument("--no-pin", action="store_true",
                        help="Do not pin the server and wrk to separate CPUs with taskset.")
    args = parser.parse_args(argv)
    args.servers = _names(parser, "--servers", args.servers, SERVERS)
    args.workloads = _names(parser, "--workloads", args.workloads, WORKLOADS)
    if args.duration < 1:
        parser.error("--duration: must be at least 1 second")
    if args.rounds < 1:
        parser.error("--rounds: must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup: must be 0 or more seconds")
    if args.retries < 0:
        parser.error("--retries: must be 0 or more")
    if args.max_noise < 0 or args.quiet_wait < 0:
        parser.error("--max-noise and --quiet-wait: must be 0 or more")
    return args


def _names(parser: argparse.ArgumentParser, flag: str, value: str, valid: dict) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        parser.error(f"{flag}: unknown {', '.join(unknown) or 'empty list'}; "
                     f"choose from {', '.join(valid)}")
    return names


def setup() -> int:
    """Create the peers' virtualenv, saying each step."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        say(f"creating {PEERS_VENV} with {sys.executable}")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    command = [str(python), "-m", "pip", "install", "--upgrade",
               *(_same_version(p) for p in PEER_PACKAGES)]
    say("running: " + shlex.join(command))
    subprocess.run(command, check=True)
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in APT_PACKAGES.items()
               if shutil.which(tool) is None]
    if missing:
        say("still needed from Debian, not installed by --setup: " + ", ".join(missing))
    say("done; check with: python bench/run.py --check")
    return 0


def _same_version(package: str) -> str:
    """``django`` -> ``django==5.2.x`` when the project's environment has it, so that every
    server runs the Django view on the same Django."""
    if package not in ("django", "channels", "channels-redis"):
        return package
    done = subprocess.run(
        [main_python(), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True, text=True,
    )
    return f"{package}=={done.stdout.strip()}" if done.returncode == 0 else package


def missing_tools(workloads: list[str]) -> dict[str, str]:
    """Workload name -> why it cannot run, for those whose generator is not installed."""
    missing = {}
    for name in workloads:
        tool = WORKLOADS[name].tool
        if tool in APT_PACKAGES and shutil.which(tool) is None:
            missing[name] = f"needs {tool}: apt-get install {APT_PACKAGES[tool]}"
    return missing


def requirements(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(missing things that stop the run, missing things that only lose a feature)."""
    fatal, optional = [], []
    if shutil.which("wrk") is None:  # the warm-up and every HTTP/1.1 row use it
        fatal.append("wrk: apt-get install wrk")
    h2 = [w for w in args.workloads if WORKLOADS[w].tool == "h2load"]
    if h2 and shutil.which("h2load") is None:
        optional.append(f"h2load (for {', '.join(h2)}, listed as n/a without it): "
                        "apt-get install nghttp2-client")
    if not args.no_pin and shutil.which("taskset") is None:
        optional.append("taskset (to pin server and wrk to separate CPUs): apt-get install "
                        "util-linux")
    for name in args.servers:
        spec = SERVERS[name]
        if not spec.installed():
            where = ("the project's .venv (pip install -e .)" if name == "django-daphne"
                     else f"{PEERS_VENV.relative_to(ROOT)}: python bench/run.py --setup")
            fatal.append(f"{spec.label}: not installed in {where}")
    if not args.no_chart and not _chart_python():
        optional.append("matplotlib (for results.png): python bench/run.py --setup")
    return fatal, optional


def _chart_python() -> str | None:
    for python in (PEERS_VENV / "bin" / "python", Path(sys.executable)):
        if python.exists() and subprocess.run(
            [str(python), "-c", "import matplotlib"], capture_output=True
        ).returncode == 0:
            return str(python)
    return None


def pinning(no_pin: bool) -> tuple[int | None, int | None, str]:
    """(server CPU, wrk CPU, a sentence saying so)."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin:
        return None, None, "No CPU pinning (--no-pin)."
    if len(cpus) < 2:
        return None, None, "One CPU only: server and wrk share it (no pinning)."
    if shutil.which("taskset") is None:
        return None, None, "No pinning (taskset missing)."
    return cpus[0], cpus[1], (f"Server pinned to CPU {cpus[0]}, the load generator to CPU "
                              f"{cpus[1]} (taskset), except where a table says otherwise.")


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    server_cpu, wrk_cpu, pin_text = pinning(args.no_pin)
    unavailable = missing_tools(args.workloads)
    measured = [w for w in args.workloads if WORKLOADS[w].measure and w not in unavailable]
    starts = len({WORKLOADS[w].launch for w in measured})
    per_server = (1 + args.warmup) * starts + sum(
        (2 if w == "workers-keepalive" else 1) * (args.duration + 0.7) for w in measured)
    say(f"{len(args.servers)} server(s) × {len(measured)} measured workload(s) × "
        f"{args.rounds} round(s) × {args.duration:g} s: about "
        f"{per_server * len(args.servers) * args.rounds / 60:.1f} min on a quiet machine, more "
        f"where measurements are taken again for noise (--max-noise {args.max_noise:g})")
    raise_fd_limit()
    specs = [SERVERS[name] for name in args.servers]
    versions = {spec.name: spec.version() for spec in specs}
    rounds: dict[str, dict[str, list[Measurement]]] = {w: {} for w in args.workloads}
    failures: dict[tuple[str, str], str] = {}
    loadavg_before = _loadavg()
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        source = Path(tmp) / "src"
        code = snapshot(source)
        say(f"serving from a copy of django_daphne/ ({code}) in {source}")
        if args.baseline:
            baseline = baseline_spec(args.baseline, Path(tmp) / "baseline")
            specs.insert(specs.index(SERVERS["django-daphne"]) + 1
                         if SERVERS["django-daphne"] in specs else 0, baseline)
            versions[baseline.name] = f"git {args.baseline}"
            say(f"and django-daphne at {args.baseline} as {baseline.name}")
        ctx = Context(duration=args.duration, loadgen_cpu=wrk_cpu, tmpdir=Path(tmp),
                      server_cpu=server_cpu, source=source, warmup=args.warmup)
        if any(WORKLOADS[w].launch.tls for w in measured):
            ctx.certificate = make_certificate(Path(tmp))
        redis = None
        if any(WORKLOADS[w].launch.redis for w in measured):
            redis, ctx.redis_url = start_redis(Path(tmp))
            say(f"redis-server for the Redis channel layer at {ctx.redis_url}")
        try:
            for round_no in range(1, args.rounds + 1):
                run_round(args, ctx, specs, measured, round_no, rounds, failures)
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait(timeout=30)
    data = {

        "meta": {
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": f"Linux {platform.release()}",
            "pinning": pin_text,
            "rounds": args.rounds,
            "duration": float(max(1, round(args.duration))),
            "loadavg_before": loadavg_before,
            "loadavg_after": _loadavg(),
            "elapsed_s": time.monotonic() - started,
            "max_noise": args.max_noise,
            "retries": args.retries,
            "remeasured": sum(m.attempts - 1 for per in rounds.values()
                              for ms in per.values() for m in ms),
            "measurements": sum(len(ms) for per in rounds.values() for ms in per.values()),
            "command": ("python bench/run.py " + shlex.join(sys.argv[1:])).strip(),
            "code": code,
        },
        "servers": [{"name": s.name, "label": s.label, "version": versions[s.name]}
                    for s in specs],
        "workloads": [],
        "results": {},
    }
    for name in args.workloads:
        w = WORKLOADS[name]
        data["workloads"].append({"name": name, "title": w.title, "unit": w.unit,
                                  "pending": w.pending, "higher_is_better": w.higher_is_better,
                                  "note": w.note,
                                  "extra_columns": [list(c) for c in w.extra_columns]})
        results = data["results"][name] = {}
        for spec in specs:
            if (name, spec.name) in failures:
                results[spec.name] = {"na": failures[(name, spec.name)]}
            elif spec.name in rounds[name]:
                results[spec.name] = report.summarise(rounds[name][spec.name], args.max_noise)
            elif w.pending:
                results[spec.name] = {"na": w.pending}
            elif w.needs not in spec.features:
                results[spec.name] = {"na": spec.why_not(w.needs)}
            elif name in unavailable:
                results[spec.name] = {"na": unavailable[name]}
            else:
                results[spec.name] = {"na": "not measured"}
    return write_outputs(args, data)


def run_round(args: argparse.Namespace, ctx: Context, specs: list, measured: list[str],
              round_no: int, rounds: dict, failures: dict) -> None:
    """Every server in turn, one start per launch its workloads need."""
    for spec in specs:
        todo = [w for w in measured if WORKLOADS[w].needs in spec.features
                and (w, spec.name) not in failures]
        launches = list(dict.fromkeys(WORKLOADS[w].launch for w in todo))
        for launch in launches:
            group = [w for w in todo if WORKLOADS[w].launch == launch]
            run_group(args, ctx, spec, launch, group, round_no, rounds, failures)


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server of the run's own on a free port, nothing written to disk, ready."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("bench: redis-server did not start")
        time.sleep(0.05)


def run_group(args: argparse.Namespace, ctx: Context, spec, launch, group: list[str],
              round_no: int, rounds: dict, failures: dict) -> None:
    """One server start for the workloads that share its launch; each measured in turn."""
    try:
        with start_server(ctx, spec, launch) as server:
            for name in group:
                try:
                    m = measure_quietly(args, ctx, server, name)
                except (RuntimeError, OSError, ServerError) as exc:
                    failures[(name, spec.name)] = f"failed: {exc}"
                    say(f"round {round_no} {spec.label} {name}: FAILED {exc}\n"
                        f"{server.output()}")
                    continue
                rounds[name].setdefault(spec.name, []).append(m)
                say(f"round {round_no}/{args.rounds} {spec.label:13} {name:17} "
                    f"{m.value:>10,.1f} {WORKLOADS[name].unit}  p99 {_opt(m.p99_ms, 'ms')}  "
                    f"server CPU {_opt(m.server_cpu, '%')}  {m.generator} CPU "
                    f"{_opt(m.load_cpu, '%')}  other {_opt(m.other_cpu)}  attempts {m.attempts}"
                    + "".join(f"  {k} {v:,.2f}" for k, v in m.extra.items()))
    except (ServerError, RuntimeError, OSError) as exc:
        for name in group:
            failures.setdefault((name, spec.name), f"failed: {str(exc).splitlines()[0]}")
        say(f"{spec.label} ({launch.kind}): {exc}")


def _opt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:.2f}" + (f" {unit}" if unit else "")


def measure_quietly(args: argparse.Namespace, ctx: Context, server: ServerProcess,
                    name: str) -> Measurement:
    """Measure when the machine is quiet; take a noisy measurement again, keep the quietest.

    Other work on a shared machine steals the server's or wrk's CPU and lowers its figure;
    this keeps such rounds out of the medians where it can, and the report says when not.
    """
    best: Measurement | None = None
    for attempt in range(1, args.retries + 2):
        deadline = time.monotonic() + args.quiet_wait
        while machine_noise() > args.max_noise and time.monotonic() < deadline:
            pass  # machine_noise() itself waits half a second per look
        m = WORKLOADS[name].measure(ctx, server)
        m.attempts = attempt
        if best is None or (m.other_cpu or 0) < (best.other_cpu or 0):
            best = m
        if (m.other_cpu or 0) <= args.max_noise:
            break
    best.attempts = attempt
    return best


def write_outputs(args: argparse.Namespace, data: dict) -> int:
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    chart_name = None
    if not args.no_chart:
        python = _chart_python()
        if python is None:
            say("matplotlib not found: no chart (python bench/run.py --setup installs it)")
        else:
            chart = subprocess.run(
                [python, str(ROOT / "bench" / "chart.py"), str(json_path),
                 str(out / "results.png")], capture_output=True, text=True,
            )
            if chart.returncode == 0:
                chart_name = "results.png"
            else:
                say(f"chart failed: {chart.stderr.strip() or chart.stdout.strip()}")
    generated = report.render(data, chart_name)
    md_path = out / "RESULTS.md"
    existing = md_path.read_text() if md_path.exists() else None
    md_path.write_text(report.merge(existing, generated, RESULTS_HEADER))
    print(generated)
    say(f"wrote {md_path}, {json_path}" + (f", {out / chart_name}" if chart_name else ""))
    return 0


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        return setup()
    fatal, optional = requirements(args)
    if args.check or fatal:
        for item in fatal:
            say(f"MISSING {item}")
        for item in optional:
            say(f"optional, missing: {item}")
        if not fatal and not optional:
            say("everything needed is there")
        return 2 if fatal else 0
    for item in optional:
        say(f"note: {item}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
