"""An offline HTML report of a replicated experiment: headline figures with intervals, and pictures.

:func:`write_report` draws with matplotlib (Agg backend, no display needed) and writes, next to the
HTML file ``NAME.html``, the PNG images ``NAME-response.png`` (response-time distributions per
policy), ``NAME-neighborhoods.png`` (median response and eligible calls not reached per neighborhood,
with 95 % intervals), ``NAME-hours.png`` (hour-of-day profile of eligible calls not reached) and
``NAME-backlog.png`` (calls waiting by hour of day). The same images are embedded in the HTML as
base64, so the page needs nothing else: it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from routing.errors import InvalidInput, reason

#: Figures of the headline table: key, label, unit ("min" for seconds shown in minutes, "%" shares).
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("calls", "calls", "n"),
    ("eligible_reach", "eligible-call reach", "%"),
    ("eligible_fell_back_share", "eligible calls that fell back", "%"),
    ("eligible_unserved_share", "eligible calls unserved", "%"),
    ("police_backup_rate", "police-backup rate (mental-health calls)", "%"),
    ("transport_rate", "transport rate", "%"),
    ("late_share", "late share (all standards)", "%"),
    ("response_median_s", "response median", "min"),
    ("response_p90_s", "response 90th percentile", "min"),
    ("response_gap_s", "neighborhood response gap (demand-weighted)", "min"),
    ("wait_probability", "probability of waiting", "%"),
    ("backlog_mean", "backlog (mean calls waiting)", "n"),
    ("backlog_max", "backlog (largest)", "n"),
)


def fmt(value: float | None, unit: str) -> str:
    """A figure for people: shares in %, seconds in minutes."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "min":
        return f"{value / 60:.1f} min"
    if unit == "pp":  # a difference of two shares: percentage points, signed
        return f"{_signed(value * 100, 1)} pp"
    if unit == "+min":  # a difference of two times, signed
        return f"{_signed(value / 60, 1)} min"
    if unit == "+":
        return _signed(value, 2 if abs(value) < 100 else 0)
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _signed(x: float, digits: int) -> str:
    text = f"{x:+,.{digits}f}"
    return text.replace("-", "+", 1) if float(text) == 0 else text  # no "-0.0"


def diff_unit(unit: str) -> str:
    """The unit of a paired difference of figures in ``unit`` (shares differ in percentage points)."""
    return {"%": "pp", "min": "+min"}.get(unit, "+")


def fmt_ci(d: dict[str, Any], unit: str) -> str:
    """``mean [low, high]``."""
    lo, hi = d["ci95"]
    if lo is None:
        return fmt(d["mean"], unit)
    return f"{fmt(d['mean'], unit)} [{fmt(lo, unit)}, {fmt(hi, unit)}]"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, works on a headless server
    import matplotlib.pyplot as plt

    return plt


def figures(result: Any) -> dict[str, bytes]:
    """The report's PNG images, by short name (``response``, ``neighborhoods``, ``hours``, ``backlog``)."""
    import numpy as np

    plt = _plt()
    summaries = {p: result.summary(p) for p in result.policies}
    out: dict[str, bytes] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def png(fig: Any) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    # Response-time distributions, pooled over replications: histogram density and the CDF.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (p, s) in enumerate(summaries.items()):
        for ax, key, style in ((ax1, "response_hist_min", "-"), (ax2, "mh_response_hist_min", "-")):
            h = np.asarray(s["series_mean"].get(key, []), dtype=float)
            if not h.sum():
                continue
            cdf = np.cumsum(h) / h.sum()
            ax.step(np.arange(1, len(h) + 1), cdf, style, where="post", color=colors[k % len(colors)], label=p)
    for ax, title in ((ax1, "all calls"), (ax2, "mental-health calls")):
        ax.set_xlim(0, 60)
        ax.set_ylim(0, 1)
        ax.set_xlabel("response time (minutes, call received to team on scene)")
        ax.set_ylabel("share of served calls within")
        ax.set_title(f"Response-time distribution, {title}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    out["response"] = png(fig)

    # Per neighborhood: median response and eligible calls not reached, with 95 % intervals.
    names = sorted({nb for s in summaries.values() for nb in s["by_neighborhood"] if nb != "(unknown)"})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(4, 0.32 * len(names) + 1.5)), sharey=True)
    y = np.arange(len(names))
    width = 0.8 / max(1, len(summaries))
    for k, (p, s) in enumerate(summaries.items()):
        for ax, key, scale in ((ax1, "response_median_s", 1 / 60), (ax2, "eligible_not_reached_share", 100)):
            means, lo, hi = [], [], []
            for nb in names:
                d = s["by_neighborhood"].get(nb, {}).get(key)
                m = d["mean"] if d else None
                means.append(np.nan if m is None else m * scale)
                a, b = (d["ci95"] if d else [None, None])
                # A share's t interval can cross 0 or 1 with few calls.
                if scale == 100 and a is not None and b is not None:
                    a, b = max(a, 0.0), min(b, 1.0)
                lo.append(0 if a is None or m is None else (m - a) * scale)
                hi.append(0 if b is None or m is None else (b - m) * scale)
            ax.errorbar(means, y + (k - (len(summaries) - 1) / 2) * width, xerr=[lo, hi], fmt="o", ms=4,
                        capsize=2, color=colors[k % len(colors)], label=p)
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("median response (minutes), mean and 95 % CI over replications")
    ax2.set_xlabel("eligible calls not reached by the alternative team (%)")
    ax1.set_title("Median response by neighborhood")
    ax2.set_title("Eligible calls not reached by neighborhood")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out["neighborhoods"] = png(fig)

    # Hour-of-day profile of eligible calls not reached (fell back or unserved), with intervals.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    hours = np.arange(24)
    for k, (p, s) in enumerate(summaries.items()):
        c = colors[k % len(colors)]
        for ax, key, scale in ((ax1, "eligible_not_reached_share", 100), (ax2, "eligible_fell_back_per_day", 1)):
            rows = s["by_hour"].get(key, [])
            m = np.array([np.nan if r["mean"] is None else r["mean"] * scale for r in rows])
            low = np.array([np.nan if r["ci95"][0] is None else r["ci95"][0] * scale for r in rows])
            high = np.array([np.nan if r["ci95"][1] is None else r["ci95"][1] * scale for r in rows])
            ax.plot(hours, m, "o-", ms=3, color=c, label=p)
            # Shares and counts cannot leave [0, 100 %] / [0, inf): clip the t interval for the picture.
            ax.fill_between(hours, np.clip(low, 0, 100 if scale == 100 else None),
                            np.clip(high, 0, 100 if scale == 100 else None), color=c, alpha=0.2)
        rows = s["by_hour"].get("eligible_unserved_per_day", [])
        ax2.plot(hours, [r["mean"] or 0 for r in rows], "x--", ms=4, color=c, label=f"{p}: unserved")
    ax1.set_ylabel("eligible calls not reached (%)")
    ax2.set_ylabel("eligible calls a day")
    ax1.set_title("Eligible calls not reached, by hour of day")
    ax2.set_title("Eligible calls that fell back (o) or went unserved (x)")
    for ax in (ax1, ax2):
        ax.set_xlabel("hour of day (Boston time)")
        ax.set_xticks(range(0, 24, 3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out["hours"] = png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, (p, s) in enumerate(summaries.items()):
        rows = s["by_hour"].get("backlog_mean", [])
        ax.plot(hours, [r["mean"] or 0 for r in rows], "o-", ms=3, color=colors[k % len(colors)], label=p)
    ax.set_xlabel("hour of day (Boston time)")
    ax.set_ylabel("calls waiting for a team (mean)")
    ax.set_title("Backlog of waiting calls by hour of day")
    ax.set_xticks(range(0, 24, 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out["backlog"] = png(fig)
    return out


def write_report(result: Any, path: str | os.PathLike[str], *, title: str | None = None) -> list[Path]:
    """Write the HTML report and its PNG images; return the paths written (HTML first).

    Parameters
    ----------
    result
        A :class:`routing.experiments.ExperimentResult`.
    path
        The HTML file; images go beside it as ``STEM-NAME.png``.

    Raises
    ------
    InvalidInput
        The file or an image cannot be written.
    """
    target = Path(path)
    images = figures(result)
    written = [target]
    try:
        for name, data in images.items():
            p = target.with_name(f"{target.stem}-{name}.png")
            p.write_bytes(data)
            written.append(p)
        target.write_text(_html(result, images, title), encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write report {target}: {reason(exc)}", field="report") from None
    return written


def _html(result: Any, images: dict[str, bytes], title: str | None) -> str:
    sc = result.scenario
    e = html.escape
    title = title or f"Simulation of {', '.join(result.policies)}"
    rows = []
    summaries = {p: result.summary(p)["scalars"] for p in result.policies}
    diffs = result.differences() if len(result.policies) > 1 else {}
    head = "".join(f"<th>{e(p)}</th>" for p in result.policies) + "".join(f"<th>{e(k)}</th>" for k in diffs)
    keys = list(HEADLINE) + [(k, k.replace("late_share[", "late share: ").rstrip("]"), "%")
                             for k in summaries[result.policies[0]] if k.startswith("late_share[")]
    keys += [(k, "utilisation " + k[len("utilisation["):-1], "%")
             for k in summaries[result.policies[0]] if k.startswith("utilisation[")]
    for key, label, unit in keys:
        cells = "".join(f"<td>{fmt_ci(summaries[p][key], unit)}</td>" if key in summaries[p] else "<td>-</td>"
                        for p in result.policies)
        cells += "".join(f"<td>{fmt_ci(d[key], diff_unit(unit))}</td>" if key in d else "<td>-</td>"
                         for d in diffs.values())
        rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    captions = {
        "response": "Share of served calls reached within a given time (pooled over replications).",
        "neighborhoods": "Per neighborhood: mean over replications with the 95 % confidence interval.",
        "hours": "Eligible mental-health calls not answered by the alternative team, by hour of the call.",
        "backlog": "Mean number of calls waiting for an eligible team, by hour of day.",
    }
    reps = result.replications
    paired = (f" Differences are paired (policy minus {e(result.policies[0])}, replication by replication; "
              "shares in percentage points)." if diffs else "")
    figs = "".join(
        f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(b).decode("ascii")}">'
        f"<figcaption>{e(captions.get(n, n))}</figcaption></figure>" for n, b in images.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th:first-child{{text-align:left}}img{{max-width:100%}}figure{{margin:2em 0}}</style></head><body>
<h1>{e(title)}</h1>
<p>{reps} replication{'s' if reps != 1 else ''} with common random numbers (seeds {e(str(sc.get('seed')))} ..
{e(str(int(sc.get('seed', 0)) + reps - 1))}), {e(str(sc.get('days')))} days
from {e(str(sc.get('start')))}.
Every figure: mean over replications [95 % confidence interval, Student t].{paired}
Definitions: docs/METRICS.md.</p>
<table><tr><th>figure</th>{head}</tr>{''.join(rows)}</table>
{figs}
</body></html>
"""


__all__ = ["HEADLINE", "figures", "fmt", "fmt_ci", "write_report"]
