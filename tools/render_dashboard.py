"""Draws the Grafana dashboard JSON as a PNG preview: its real layout, titles, units and legends, on synthetic data."""

# Usage: python -m tools.render_dashboard [--dashboard FILE] [--out docs/dashboard.png]
# The picture is a layout check (what sits where, what each panel plots), not a Grafana screenshot:
# every series is a smooth synthetic curve whose legend is the panel's legendFormat filled in.

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "warmpool-operator" / "dashboards" / "warmpool.json"
OUTPUT = ROOT / "docs" / "dashboard.png"

COLUMNS = 24
ROW_HEIGHT_PX = 30
WIDTH_PX = 1600
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")
SAMPLE_LABELS = {
    "tenant": "acme", "module": "3f5c9a1b2c4d", "result": "hit", "deployment": "echo", "code": "ok",
    "trap": "unreachable", "reason": "ModuleUnreachable", "trigger": "resync",
}
STAT_VALUES = {"percentunit": 0.0062, "reqps": 412.0, "short": 48.0, "s": 0.0021, "ops": 0.4}


def legend(fmt: str, index: int, expr: str = "") -> str:
    """A legendFormat with its {{label}} placeholders filled in with sample values."""
    labels = dict(SAMPLE_LABELS)
    if "warmpool_operator_" in expr:
        labels.update({"result": "ok", "trigger": "resync"})
    if index % 2 == 1:
        labels.update({"tenant": "globex", "code": "guest_trap", "reason": "ConfigMapMissing", "deployment": "classify",
                       "trap": "integer_division_by_zero"})
        labels["result"] = "error" if "warmpool_operator_" in expr else "miss"
        labels["trigger"] = "update"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), m.group(1)), fmt)


def series(unit: str, seed: int, points: int = 120) -> list[float]:
    """A deterministic, plausible curve for a unit."""
    scale = {"percentunit": 0.012, "reqps": 300.0, "s": 0.003, "ops": 0.5}.get(unit, 40.0)
    return [
        scale * (1.0 + 0.35 * math.sin(i / 9.0 + seed) + 0.15 * math.sin(i / 2.7 + 2 * seed)) / (1 + 0.4 * seed)
        for i in range(points)
    ]


def format_value(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.2f}%"
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "reqps":
        return f"{value:.0f} req/s"
    if unit == "ops":
        return f"{value:.2f} ops/s"
    return f"{value:.0f}"


def draw(dashboard: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    panels = dashboard["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 2
    height_px = (bottom + header) * ROW_HEIGHT_PX
    dpi = 100
    fig = plt.figure(figsize=(WIDTH_PX / dpi, height_px / dpi), dpi=dpi, facecolor=BACKGROUND)
    unit_w = 1.0 / COLUMNS
    unit_h = 1.0 / (bottom + header)

    variables = "   ".join(
        f"{v.get('label', v['name'])}: {v['current']['text'] if v['type'] != 'query' else 'All'}"
        for v in dashboard["templating"]["list"]
    )
    fig.text(0.005, 1 - 0.6 * unit_h, dashboard["title"], color=TEXT, fontsize=15, weight="bold", va="center")
    fig.text(0.005, 1 - 1.4 * unit_h, variables, color="#8e8e8e", fontsize=9, va="center")

    for panel in panels:
        grid = panel["gridPos"]
        left = grid["x"] * unit_w
        top = 1 - (grid["y"] + header) * unit_h
        width, height = grid["w"] * unit_w, grid["h"] * unit_h
        if panel["type"] == "row":
            fig.text(left + 0.004, top - height / 2, "\u25be " + panel["title"], color=TEXT, fontsize=11,
                     weight="bold", va="center")
            continue
        pad = 0.002
        fig.patches.append(FancyBboxPatch(
            (left + pad, top - height + pad), width - 2 * pad, height - 2 * pad,
            boxstyle="round,pad=0,rounding_size=0.002", transform=fig.transFigure,
            facecolor=PANEL, edgecolor=BORDER, linewidth=1, zorder=-10,
        ))
        fig.text(left + 0.006, top - 0.55 * unit_h, panel["title"], color=TEXT, fontsize=9.5, weight="bold",
                 va="center")
        unit = panel["fieldConfig"]["defaults"]["unit"]
        targets = panel["targets"]
        if panel["type"] == "stat":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            parts = []
            for i, target in enumerate(targets):
                value = STAT_VALUES.get(unit, 10.0) * (1 + 0.25 * i)
                color = steps[0]["color"]
                for step in steps[1:]:
                    if step["value"] is not None and value >= step["value"]:
                        color = step["color"]
                parts.append((legend(target["legendFormat"], i), format_value(value, unit), color))
            for i, (name, text, color) in enumerate(parts):
                x = left + width * (i + 0.5) / len(parts)
                fig.text(x, top - height * 0.55, text, color=_named(color), fontsize=20, weight="bold",
                         ha="center", va="center")
                fig.text(x, top - height * 0.82, name, color="#8e8e8e", fontsize=8.5, ha="center", va="center")
            continue
        entries = sum(2 if "{{" in tg["legendFormat"] else 1 for tg in targets)
        columns = 3 if entries > 4 else 4
        legend_rows = -(-entries // columns)
        ax_bottom = top - height + (0.55 + 0.55 * legend_rows) * unit_h
        ax = fig.add_axes((left + 0.04, ax_bottom, width - 0.05, top - 1.1 * unit_h - ax_bottom))
        ax.set_facecolor(PANEL)
        for spine in ax.spines.values():
            spine.set_color(BORDER)
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        ax.grid(color=BORDER, linewidth=0.5)
        index = 0
        for target in targets:
            fanout = 2 if "{{" in target["legendFormat"] else 1
            for _ in range(fanout):
                name = legend(target["legendFormat"], index, target["expr"])
                values = series(unit, index)
                style = "--" if name == "target" else "-"
                if name == "target":
                    values = [0.01] * len(values)
                ax.plot(values, style, color=PALETTE[index % len(PALETTE)], linewidth=1.2, label=name)
                index += 1
        ax.set_xticks([0, 30, 60, 90, 119], ["-3h", "-2h15", "-1h30", "-45m", "now"])
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos, u=unit: format_value(v, u)))
        ax.legend(loc="upper left", bbox_to_anchor=(-0.02, -0.1), ncol=columns, fontsize=7, frameon=False,
                  labelcolor=TEXT, handlelength=1.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BACKGROUND)
    plt.close(fig)


def _named(color: str) -> str:
    return {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c"}.get(color, color)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip())
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    draw(json.loads(args.dashboard.read_text()), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
