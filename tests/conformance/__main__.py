"""python -m tests.conformance [--port P | --spawn] [--groups 1,2,...]

Without --port, spawns ``python -m django_daphne -p 0 tests.apps:app`` with reduced
message and frame limits (for group 9) and stops it afterwards.  With --port, tests a server
already running ``tests.apps:app``; pass its limits with --max-message-size and
--max-frame-size (1 MiB each by default, the server's defaults).  Prints a per-group table
and every failure; exits 1 if a case failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cases import GROUPS, Limits, build_cases
from .runner import SPAWN_LIMITS, SpawnedServer, report, run_cases


def parse_groups(value: str) -> list[int]:
    try:
        groups = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of group numbers: {value!r}") from None
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise argparse.ArgumentTypeError(
            f"unknown group(s) {unknown}; valid: {','.join(map(str, GROUPS))}")
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="WebSocket conformance cases (RFC 6455, RFC 7692) over raw frames, "
                    "grouped as the Autobahn|Testsuite groups them.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="test a running server on this port "
                       "(serving tests.apps:app)")
    where.add_argument("--spawn", action="store_true", help="start a server for the run "
                       "(the default)")
    parser.add_argument("--host", default="127.0.0.1", help="the running server's address")
    parser.add_argument("--groups", type=parse_groups, default=None,
                        help=f"comma-separated groups to run (default: all of "
                             f"{','.join(map(str, GROUPS))})")
    parser.add_argument("--max-message-size", type=int, default=1024 * 1024,
                        help="with --port: the server's --websocket-max-message-size")
    parser.add_argument("--max-frame-size", type=int, default=1024 * 1024,
                        help="with --port: the server's --websocket-max-frame-size")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for each expected reply (default 5)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--progress", action="store_true", help="print each case's outcome")
    args = parser.parse_args(argv)

    if args.port is None:
        limits = SPAWN_LIMITS
    else:
        limits = Limits(args.max_message_size, args.max_frame_size)
        if min(limits.message, limits.frame) <= 65536:
            parser.error("--max-message-size and --max-frame-size must be the server's "
                         "limits, above 64 KiB (the cases send 64 KiB frames; a server "
                         "without limits cannot pass group 9)")
    cases = build_cases(limits, args.groups)
    if args.list:
        for case in cases:
            print(f"{case.id:10} {case.title}")
        return 0

    server = None
    if args.port is None:
        server = SpawnedServer(limits)
        host, port = server.address  # type: ignore[misc]
    else:
        host, port = args.host, args.port
    started = time.monotonic()
    try:
        results = run_cases(cases, host, port, args.timeout, progress=args.progress)
    finally:
        if server is not None:
            server.stop()
    print(report(results))
    failed = sum(1 for r in results if r.status == "failed")
    print(f"\n{len(results)} cases against {host}:{port} in "
          f"{time.monotonic() - started:.1f}s: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
