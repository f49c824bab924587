"""Draw the PNG bar chart from a results.json written by bench/run.py.

Needs matplotlib, which ``python bench/run.py --setup`` installs into bench/.venv-peers;
run.py calls this module with that virtualenv's Python, so the project's own environment
does not need it.  By hand: ``bench/.venv-peers/bin/python bench/chart.py results.json out.png``.
"""

from __future__ import annotations

import json
import sys

COLOURS = {
    "django-daphne": "#0c4b33",
    "daphne": "#8c8c8c",
    "uvicorn": "#4051b5",
    "hypercorn": "#c97a00",
    "granian": "#b5405f",
}


def draw(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [
        w for w in data["workloads"]
        if any("value" in r for r in data["results"][w["name"]].values())
    ]
    if not workloads:
        raise SystemExit("no measured workload to chart")
    servers = data["servers"]
    fig, axes = plt.subplots(
        len(workloads), 1, figsize=(8, 0.6 + (0.8 + 0.4 * len(servers)) * len(workloads)),
        squeeze=False,
    )
    for ax, workload in zip(axes[:, 0], workloads, strict=True):
        results = data["results"][workload["name"]]
        base = results.get("daphne", {}).get("value")
        uvicorn = results.get("uvicorn", {}).get("value")
        names = [s for s in servers if "value" in results.get(s["name"], {})]
        values = [results[s["name"]]["value"] for s in names]
        y = range(len(names))
        ax.barh(list(y), values, color=[COLOURS.get(s["name"], "#555") for s in names])
        ax.set_yticks(list(y), [s["label"] for s in names])
        ax.invert_yaxis()
        short = workload["title"].split(" (")[0]  # the table has the whole title
        ax.set_title(f"{workload['name']}: {short}", fontsize=9, loc="left")
        ax.set_xlabel(workload["unit"] + ("" if workload.get("higher_is_better", True)
                                          else " (lower is better)"), fontsize=8)
        ax.tick_params(labelsize=8)
        top = max(values)
        ax.set_xlim(0, top * 1.65)
        better = workload.get("higher_is_better", True)
        for i, value in enumerate(values):
            ratios = [f"{(value / ref if better else ref / value):.2f}× {who}"
                      for ref, who in ((base, "Daphne"), (uvicorn, "Uvicorn")) if ref and value]
            ratio_1w = results[names[i]["name"]].get("extra", {}).get("ratio")
            if ratio_1w:  # the workers row: two workers against one
                ratios.insert(0, f"{ratio_1w:.2f}× 1 worker")
            shown = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
            label = shown + (f"  ({', '.join(ratios)})" if ratios else "")
            ax.text(value + top * 0.01, i, label, va="center", fontsize=7)
    meta = data["meta"]
    fig.suptitle(
        f"Same machine, same run: {meta['cpus']} CPUs, median of {meta['rounds']} round(s) "
        f"× {meta['duration']:g} s", fontsize=10,
    )
    # leave the title its own strip at the top (tight_layout ignores it)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: chart.py RESULTS_JSON OUTPUT_PNG")
    with open(sys.argv[1]) as f:
        draw(json.load(f), sys.argv[2])
