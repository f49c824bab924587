"""Run conformance cases against a server, judge them, and report per group."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .cases import GROUPS, Case, Limits
from .client import Connection, HandshakeFailed, parse_extensions

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Listening on TCP address \[?([0-9a-fA-F.:]+)\]?:(\d+)")
# what a spawned server is started with: low enough that group 9 stays fast
SPAWN_LIMITS = Limits(message=256 * 1024, frame=128 * 1024)
TERMINAL = ("eof", "reset")


@dataclass
class Result:
    case: Case
    status: str  # "passed", "failed" or "deviation" (a documented failure, as documented)
    expected: str
    actual: str
    problem: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# -- describing events


def describe(event: tuple) -> str:
    kind = event[0]
    if kind in ("text", "binary", "pong"):
        data = event[1]
        if len(data) <= 24:
            shown = repr(data.decode("utf-8", "replace")) if kind == "text" else repr(data)
            return f"{kind}({shown})"
        return f"{kind}[{len(data)} bytes, sha1 {hashlib.sha1(data).hexdigest()[:8]}]"
    if kind == "close":
        code, reason = event[1], event[2]
        reason_text = f" {reason.decode('utf-8', 'replace')[:40]!r}" if reason else ""
        return f"close({'no code' if code is None else code}{reason_text})"
    if kind == "server-error":
        return f"SERVER ERROR: {event[1]}"
    return kind


def describe_all(events: list | tuple, limit: int = 8) -> str:
    if not events:
        return "nothing"
    shown = [describe(e) for e in events]
    if len(shown) > limit:
        shown = shown[: limit - 2] + [f"... {len(shown) - limit + 1} more ..."] + shown[-1:]
    return ", ".join(shown)


def describe_expectation(case: Case, close: tuple | None) -> str:
    before = describe_all(case.expect)
    if close is None:
        after = "still open: our close 1000 answered with 1000, then TCP closed"
    else:
        codes = " or ".join("no code" if c is None else str(c) for c in close)
        after = f"close({codes}), then TCP closed"
    prefix = "" if case.strict else "(any prefix of) "
    return f"{prefix}{before}; {after}"


# -- permessage-deflate negotiation, RFC 7692 section 7.1


def _offer_problem(params: list) -> str | None:
    """Why an offer (or a response) for permessage-deflate is malformed, or None."""
    seen = set()
    for name, value in params:
        if name in seen:
            return f"parameter {name} given twice"
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return f"{name} takes no value"
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if name == "server_max_window_bits":
                    return "server_max_window_bits needs a value"
            elif not re.fullmatch(r"[1-9][0-9]*", value) or not 8 <= int(value) <= 15:
                return f"{name}={value} is not 8 to 15"
        else:
            return f"unknown parameter {name}"
    return None


def negotiation_problem(case: Case, conn: Connection) -> str | None:
    """Whether the server's Sec-WebSocket-Extensions answer is one RFC 7692 allows."""
    offers = parse_extensions(list(case.extensions))
    names = {name for name, _ in offers}
    deflates = [dict(p) for n, p in offers if n == "permessage-deflate"
                and _offer_problem(p) is None]
    accepted = [(n, p) for n, p in conn.extensions]
    for name, _ in accepted:
        if name not in names:
            return f"the server answered with an extension never offered: {name}"
    answers = [p for n, p in accepted if n == "permessage-deflate"]
    if len(answers) > 1:
        return "permessage-deflate accepted twice"
    if answers:
        answer = answers[0]
        problem = _offer_problem(answer)
        if problem:
            return f"malformed permessage-deflate response: {problem}"
        agreed = dict(answer)
        if "client_max_window_bits" in agreed and agreed["client_max_window_bits"] is None:
            return "client_max_window_bits in a response needs a value"

        def fits(offer: dict) -> bool:
            if "server_no_context_takeover" in offer and \
                    "server_no_context_takeover" not in agreed:
                return False
            if "server_max_window_bits" in offer and (
                    "server_max_window_bits" not in agreed
                    or int(agreed["server_max_window_bits"])
                    > int(offer["server_max_window_bits"])):
                return False
            return "client_max_window_bits" not in agreed or "client_max_window_bits" in offer

        if not any(fits(offer) for offer in deflates):
            return (f"the response {conn.header('sec-websocket-extensions')} accepts none of "
                    f"the valid offers {list(case.extensions)}")
    if case.negotiate and conn.deflate is None:
        return "permessage-deflate was not negotiated"
    if case.negotiate is False and conn.deflate is not None:
        return "permessage-deflate was negotiated though the offer had to be declined"
    return None


# -- one case


def _judge(case: Case, events: list, close: tuple | None) -> str | None:
    """What is wrong with ``events`` for this expectation, or None."""
    errors = [e for e in events if e[0] == "server-error"]
    if errors:
        return errors[0][1]
    ends = [i for i, e in enumerate(events) if e[0] == "close" or e[0] in TERMINAL]
    end = ends[0] if ends else len(events)
    before, rest = events[:end], events[end:]
    expect = list(case.expect)
    if case.strict and before != expect:
        return "the messages differ" if before else "expected messages are missing"
    if not case.strict and before != expect[: len(before)]:
        return "the messages differ"
    if not rest:
        return "timed out: no close frame"
    if rest[0][0] != "close":
        return "the server dropped the TCP connection without a close frame"
    codes = (1000,) if close is None else close
    if rest[0][1] not in codes:
        return f"close code {rest[0][1]} instead of {' or '.join(map(str, codes))}"
    if len(rest) < 2 or rest[-1][0] not in TERMINAL:
        return "the server did not close the TCP connection after the close handshake"
    if len(rest) > 2:
        return "the server sent frames after its close frame"
    return None


def run_case(case: Case, host: str, port: int, timeout: float = 5.0) -> Result:
    expected = describe_expectation(case, case.close)
    try:
        conn = Connection(host, port, extensions=list(case.extensions), timeout=timeout)
    except (HandshakeFailed, OSError) as exc:
        return Result(case, "failed", expected, f"handshake failed: {exc}", "handshake")
    try:
        problem = negotiation_problem(case, conn)
        if problem:
            return Result(case, "failed", expected,
                          f"Sec-WebSocket-Extensions: {conn.header('sec-websocket-extensions')}",
                          problem)
        for step in case.steps:
            step.run(conn)

        def closed(events: list) -> bool:
            return any(e[0] == "close" for e in events)

        if case.close is None:
            count = len(case.expect)
            conn.wait(lambda events: len(events) >= count or closed(events))
            if not closed(conn.events):
                conn.send_close(1000)
        conn.wait(closed)
        with conn.cond:
            server_close = next((e for e in conn.events if e[0] == "close"), None)
        if server_close is not None and not conn.sent_close:
            conn.send_close(server_close[1] if server_close[1] is not None else 1000)
        conn.wait(lambda events: bool(events) and events[-1][0] in TERMINAL)
        with conn.cond:
            events = list(conn.events)  # before our own close() adds its end
    finally:
        conn.close()
    actual = describe_all(events)
    problem = _judge(case, events, case.close)
    if problem is None:
        return Result(case, "passed", expected, actual)
    if case.deviation is not None and _judge(case, events, case.deviation_close) is None:
        return Result(case, "deviation", expected, actual, case.deviation)
    return Result(case, "failed", expected, actual, problem)


def run_cases(cases: list[Case], host: str, port: int, timeout: float = 5.0,
              progress: bool = False) -> list[Result]:
    results = []
    for case in cases:
        result = run_case(case, host, port, timeout)
        if progress:
            print(f"{case.id:10} {result.status}", file=sys.stderr, flush=True)
        results.append(result)
    return results


# -- reporting


def report(results: list[Result]) -> str:
    """The per-group table, then every failure with what was expected and what came."""
    rows = collections.OrderedDict()
    for result in results:
        row = rows.setdefault(result.case.group, [0, 0, 0, 0])
        row[0] += 1
        row[{"passed": 1, "failed": 2, "deviation": 3}[result.status]] += 1
    lines = [f"{'group':>5}  {'':32} {'cases':>5} {'passed':>6} {'failed':>6} {'known':>5}"]
    for group, (cases, passed, failed, deviations) in rows.items():
        lines.append(f"{group:>5}  {GROUPS[group]:32} {cases:>5} {passed:>6} {failed:>6} "
                     f"{deviations:>5}")
    totals = [sum(row[i] for row in rows.values()) for i in range(4)]
    lines.append(f"{'all':>5}  {'':32} {totals[0]:>5} {totals[1]:>6} {totals[2]:>6} "
                 f"{totals[3]:>5}")
    for result in results:
        if result.status == "failed":
            lines += [f"\nFAILED {result.case.id}: {result.case.title}",
                      f"  problem:  {result.problem}",
                      f"  expected: {result.expected}",
                      f"  actual:   {result.actual}"]
    for result in results:
        if result.status == "deviation":
            lines += [f"\nKNOWN DEVIATION {result.case.id}: {result.case.title}",
                      f"  why:      {result.problem}",
                      f"  actual:   {result.actual}"]
    return "\n".join(lines)


# -- a server to test


class SpawnedServer:
    """``python -m django_daphne -p 0 tests.apps:app`` with the given limits."""

    def __init__(self, limits: Limits = SPAWN_LIMITS, extra: tuple = ()) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.args = [sys.executable, "-m", "django_daphne", "-p", "0", "--access-log",
                     os.devnull, "--websocket-max-message-size", str(limits.message),
                     "--websocket-max-frame-size", str(limits.frame), *extra,
                     "tests.apps:app"]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
        self.tail: collections.deque = collections.deque(maxlen=200)
        self.address: tuple[str, int] | None = None
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(30) or self.address is None:
            self.stop()
            raise RuntimeError("the server did not start:\n" + self.output)

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.tail.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match and self.address is None:
                self.address = (match.group(1), int(match.group(2)))
            if "Server ready" in line:
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.tail)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

