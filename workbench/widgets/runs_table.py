"""The runs table shown in training widgets: one short row per run, full details for one run.

`runs_table_html(frame)` turns `wb.runs()` into a compact table (name, status, short id, "12 min
ago", the base model's name, a few key metrics) with no wrapped ids, no nanosecond timestamps and
no full paths; `run_details_html(run)` shows everything about one selected run (id, folder,
created time to the second, base model, summary, config). `run_label` names a run in titles.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

# metric columns preferred in the table (the first three present are shown)
KEY_METRICS = ("eval_accuracy", "best_eval_accuracy", "eval_macro_f1", "eval_mcc", "eval_pearson",
               "eval_loss", "best_eval_loss", "loss")
_CELL = "padding:1px 8px;white-space:nowrap;text-align:left"


def ago(stamp: Any, now: float | None = None) -> str:
    """'just now', '12 min ago', '3 h ago', '2 d ago' for a timestamp (Timestamp or epoch s)."""
    if stamp is None or (not isinstance(stamp, str) and pd.isna(stamp)):
        return "?"
    seconds = pd.Timestamp(stamp).timestamp() if not isinstance(stamp, (int, float)) else stamp
    delta = max(0.0, (now if now is not None else time.time()) - seconds)
    if delta < 60:
        return "just now"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def short_id(row) -> str:
    """The run id's random tail (the store's `short_id` column when it has one); `row` is a
    table row, a dict or a `Run`."""
    if hasattr(row, "id") and not hasattr(row, "get"):
        return str(row.id).rsplit("-", 1)[-1]
    value = row.get("short_id")
    return str(value) if isinstance(value, str) and value else str(row["id"]).rsplit("-", 1)[-1]


def model_name(value: Any) -> str:
    """A base model as a name: the folder's last part for a path, the hub name otherwise."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value).rstrip("/")
    return Path(text).name if ("/" in text and Path(text).exists()) or text.startswith("/") else text


def run_label(name: str, run_id: str, names_seen: list[str] | None = None) -> str:
    """A run's name for titles and legends; with its short id when another run shares the name."""
    if names_seen is not None and names_seen.count(name) > 1:
        return f"{name} ({run_id.rsplit('-', 1)[-1]})"
    return name


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return "" if value is None else str(value)


def runs_table_html(frame: pd.DataFrame, now: float | None = None) -> str:
    """A compact HTML table of `wb.runs()` rows (see the module docstring)."""
    if frame is None or not len(frame):
        return "<i>no runs yet</i>"
    metrics = [m for m in KEY_METRICS if m in frame.columns and frame[m].notna().any()][:3]
    head = ["name", "status", "id", "created", "base model"] + metrics
    rows = []
    for _, r in frame.iterrows():
        cells = [r.get("name", ""), r.get("status", ""), short_id(r), ago(r.get("created"), now),
                 model_name(r.get("base_model"))] + [r.get(m) for m in metrics]
        rows.append("<tr>" + "".join(f'<td style="{_CELL}">{html.escape(_fmt(c))}</td>'
                                     for c in cells) + "</tr>")
    header = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in head)
    return (f'<table class="wb-runs" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def run_details_html(run) -> str:
    """Everything about one run: id, folder, created (to the second), summary and config."""
    info = dict(run.info)
    created = info.get("created")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(created)))
            if isinstance(created, (int, float)) else str(created))
    lines = [("name", run.name), ("id", run.id), ("status", run.status), ("created", when),
             ("base model", info.get("base_model")), ("folder", str(run.path))]
    summary = {k: v for k, v in (run.summary or {}).items() if not isinstance(v, (dict, list))}
    body = "".join(f"<tr><th style='{_CELL}'>{html.escape(k)}</th>"
                   f"<td style='{_CELL}'>{html.escape(_fmt(v))}</td></tr>" for k, v in lines)
    body += "".join(f"<tr><th style='{_CELL}'>{html.escape(k)}</th>"
                    f"<td style='{_CELL}'>{html.escape(_fmt(v))}</td></tr>"
                    for k, v in summary.items())
    config = html.escape(json.dumps(run.config, indent=1, default=str))
    return (f"<table style='border-collapse:collapse;font-size:12px'>{body}</table>"
            f"<details><summary>config</summary><pre style='font-size:11px'>{config}</pre></details>")
