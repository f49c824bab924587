"""The benchmark script runs end to end on a tiny workload and writes its Markdown table.

No timing is asserted: the figures only have to exist.  Needs Debian's ``wrk``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
BEGIN = "<!-- bench:begin"
END = "<!-- bench:end -->"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=90,
    )


def test_tiny_run_writes_a_markdown_table(tmp_path):
    # A RESULTS.md from an earlier run, with hand-written text after the generated block.
    (tmp_path / "RESULTS.md").write_text(
        f"# Kept title\n\n{BEGIN}: old -->\nOLD TABLE\n{END}\n\n## Where the time goes\nkept\n"
    )
    done = run_bench(
        "--servers", "django-daphne", "--workloads", "keepalive,h2-tls",
        "--duration", "1", "--rounds", "1", "--warmup", "0", "--no-chart",
        "--output", str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr

    text = (tmp_path / "RESULTS.md").read_text()
    # The summary table: a header naming the server, and a measured keep-alive cell.
    assert "| workload | django-daphne |" in text
    assert re.search(r"^\| keepalive \(req/s\) \| [\d,]+<br>n/a D · n/a U \|$", text, re.M), text
    # The per-workload table has django-daphne's row: req/s, its range, p50 and p99 latency.
    row = re.search(r"^\| django-daphne \| ([\d,]+) \| n/a \| n/a \| [\d,]+–[\d,]+ \| "
                    r"([\d.]+) \| ([\d.]+) \|", text, re.M)
    assert row, text
    assert int(row.group(1).replace(",", "")) > 0
    # A workload not built yet is listed as n/a, not dropped.
    assert re.search(r"^\| h2-tls \(req/s\) \| n/a \|$", text, re.M), text
    # The earlier generated block is replaced; the hand-written text around it is kept.
    assert "OLD TABLE" not in text
    assert text.startswith("# Kept title\n")
    assert text.rstrip().endswith("## Where the time goes\nkept")

    data = json.loads((tmp_path / "results.json").read_text())
    measured = data["results"]["keepalive"]["django-daphne"]
    assert measured["requests"] > 0
    assert measured["errors"] == {}
    assert data["meta"]["cpus"] >= 1


def test_unknown_server_is_a_one_line_error_naming_the_flag():
    done = run_bench("--servers", "django-daphne,nginx", "--check")
    assert done.returncode == 2
    assert "--servers: unknown nginx; choose from django-daphne, daphne," in done.stderr
