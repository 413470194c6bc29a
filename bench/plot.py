"""The benchmark's picture: throughput and latency over time, one line per variant.

python bench/plot.py bench/results/<timestamp>.json   # (re)draws <timestamp>.png next to it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLORS = {
    "librdkafka_floor": "tab:brown",
    "faust_floor": "black",
    "passthrough": "tab:gray",
    "naive": "tab:red",
    "signal_sync": "tab:blue",
    "signal_sync_mapped": "tab:purple",
    "signal_sync_paced": "tab:cyan",
    "signal_sync_1_worker": "tab:green",
    "signal_sync_2_workers": "tab:olive",
}


def series(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every measured run with a timeline, main variants first."""
    runs = [(name, v) for name, v in result.get("variants", {}).items()]
    if result.get("paced"):
        runs.append(("signal_sync_paced", result["paced"]))
    for name, run in (result.get("workers") or {}).get("runs", {}).items():
        runs.append((name, run))
    return [(name, run) for name, run in runs if run.get("timeline")]


def plot(result: dict[str, Any], path: Path) -> Path:
    """Draw events/s and p50/p99 latency per second since each run's first outcome; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    for name, run in series(result):
        t = run["timeline"]
        color = COLORS.get(name)
        label = f"{name} ({run['events_per_s']:,.0f} ev/s)"
        top.plot(t["t_s"], t["events_per_s"], label=label, color=color, linewidth=1.2)
        bottom.plot(t["t_s"], t["p99_ms"], label=f"{name} p99", color=color, linewidth=1.2)
        bottom.plot(t["t_s"], t["p50_ms"], label=f"{name} p50", color=color, linewidth=0.8, linestyle="--")
    config = result.get("config", {})
    top.set_title(
        f"signal-sync benchmark {result.get('started_at', '')}: {config.get('events', '?'):,} events, "
        f"{config.get('latency_ms', '?')} ms destination latency, {config.get('partitions', '?')} partitions"
    )
    top.set_ylabel("events/s (completed)")
    top.set_yscale("symlog", linthresh=10)
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8, loc="upper right")
    bottom.set_ylabel("produce → outcome latency (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds since the run's first outcome")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} RESULT.json", file=sys.stderr)
        return 2
    source = Path(sys.argv[1])
    print(plot(json.loads(source.read_text(encoding="utf-8")), source.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
