"""Regenerate the paper table (``results/paper_table.json`` and its RESULTS.md section) from runs.

Every row is declared once in ``results/paper_rows.toml`` (which item of the table it belongs to,
its config, the command that ran it, the run folder kept under ``results/`` with its
``summary.json`` and ``metrics.jsonl``, and the paper's accuracy where the paper has one). This
script reads each folder and writes one JSON entry per row. A row whose folder has no
``summary.json`` yet (a run still going, resumed in pieces) is listed as ``"status": "running"``
with the rounds it has so far, or as ``"stopped"`` when the row says why it was stopped early
(``stopped = "..."``: compute moved elsewhere); a row with no folder at all is ``"pending"``.

Usage:
    python benchmarks/paper_table.py [--rows results/paper_rows.toml]
        [--out results/paper_table.json] [--results-md RESULTS.md] [--check] [--run ID ...]

``--run ID ...`` first trains those rows, one after the other: a row whose ``results/`` folder
already has its summary is skipped, one whose run folder (``out``: the config's, or the row's
own) has a checkpoint is resumed (``qfed-qiskit train --resume``), any other is started with its
``args`` (default ``--config CONFIG``); when a run finishes, its ``summary.json``,
``metrics.jsonl`` and ``report/`` are copied into the row's ``results/`` folder, with, for a
non-IID partition, each client's accuracy (``client_accuracy.json``, from
``benchmarks/client_accuracy.py``; the table shows its range).

Runs survive sessions, machines included: while a row trains, each new checkpoint (about
130 KB for the paper's N = 5 run, mostly the clients' Adam states) and ``metrics.jsonl`` are
mirrored into the row's ``results/`` folder, which is committed as the run goes (the table lists
it as running, with its rounds so far). On a fresh clone, where the ignored run folder is gone,
``--run ID`` restores that checkpoint and resumes; a finished run's mirrored checkpoint is
deleted. A session that ends mid-run loses at most the round in progress and whatever was not
committed: run the same command again.

``--results-md`` rewrites the table between the ``<!-- paper-table:start -->`` and
``<!-- paper-table:end -->`` markers of that file; ``--check`` only compares and exits 1 when the
JSON or the Markdown differ from what the runs give (CI's test runs it so).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomllib

from qfed_qiskit.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- paper-table:start -->", "<!-- paper-table:end -->"
CLIENT_ACCURACY = "client_accuracy.json"
"""Per-client accuracy of a non-IID row (benchmarks/client_accuracy.py), beside its summary."""
CHECKPOINT, METRICS = "checkpoint.pt", "metrics.jsonl"
"""Mirrored from a running row's run folder into its results folder (the resume point)."""
MIRROR_EVERY_S = 30.0
FIELDS = (
    "config",
    "command",
    "test_accuracy",
    "paper_accuracy",
    "trainable_params",
    "rounds",
    "clients",
    "local_epochs",
    "seed",
    "wall_time_s",
    "steps",
    "peak_rss_mb",
    "bytes_total",
    "git_commit",
)


def _read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _commits(records: list[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    """The commit(s) the run's rounds ran at, oldest first (a run resumed in pieces may span
    several); the summary's own when the rounds carry none."""
    seen: list[str] = []
    for record in records:
        commit = record.get("git_commit")
        if commit and commit not in seen:
            seen.append(commit)
    if summary.get("git_commit") and summary["git_commit"] not in seen:
        seen.append(summary["git_commit"])
    return ", ".join(c[:12] + ("+dirty" if c.endswith("+dirty") else "") for c in seen) or None


def table_entry(row: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """One row of the table: the declared fields, then what its run folder holds."""
    folder = root / row["run"]
    command = row.get("command") or f"qfed-qiskit train {shlex.join(_train_args(row))}"
    entry: dict[str, Any] = {
        "id": row["id"],
        "item": row["item"],
        "label": row["label"],
        "config": row["config"],
        "command": command,
        "run": row["run"],
        "paper_accuracy": row.get("paper_accuracy"),
    }
    records = _read_metrics(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        entry["status"] = ("stopped" if row.get("stopped") else "running") if records else "pending"
        if records and row.get("stopped"):
            entry["stopped"] = row["stopped"]
        entry["rounds_done"] = len(records)
        if records:
            entry["test_accuracy_so_far"] = records[-1]["test_accuracy"]
            entry["git_commit"] = _commits(records, {})
        for key in FIELDS:
            entry.setdefault(key, None)
        return entry
    summary = json.loads(summary_path.read_text())
    config = summary["config"]
    entry.update(
        {
            "status": "done",
            "test_accuracy": summary["test_accuracy"],
            "trainable_params": summary["trainable_params"],
            "rounds": summary.get("rounds"),
            "clients": summary.get("clients", config.get("clients")),
            "local_epochs": summary.get("local_epochs", config.get("local_epochs")),
            "seed": config["seed"],
            "wall_time_s": round(float(summary["wall_time_s"]), 1),
            "steps": summary["steps"],
            "peak_rss_mb": summary.get("peak_rss_mb"),
            "bytes_total": summary.get("bytes_total"),
            "git_commit": row.get("git_commit") or _commits(records, summary),
        }
    )
    spread_path = folder / CLIENT_ACCURACY
    if spread_path.is_file():
        spread = json.loads(spread_path.read_text())
        for key in ("client_accuracy_min", "client_accuracy_max", "client_accuracy_std"):
            entry[key] = round(float(spread[key]), 4)
    if row.get("note"):
        entry["note"] = row["note"]
    return entry


def build_table(rows_path: Path, root: Path = ROOT) -> list[dict[str, Any]]:
    """Every row of ``rows_path`` as a table entry, in file order."""
    return [table_entry(row, root) for row in _load_rows(rows_path)]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def render_markdown(table: list[dict[str, Any]]) -> str:
    """The RESULTS.md table: ours beside the paper's, one line per run."""
    lines = [
        "| item | row | ours | paper | trainable | R × E | clients | seed | wall time | "
        "peak RSS | bytes | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in table:
        if e["status"] == "done":
            ours = f"**{_pct(e['test_accuracy'])}**"
            if e.get("client_accuracy_min") is not None:
                low, high = e["client_accuracy_min"], e["client_accuracy_max"]
                ours += f" (clients {_pct(low)}–{_pct(high)})"
            wall = f"{e['wall_time_s']:,.0f} s"
            rss = "—" if e["peak_rss_mb"] is None else f"{e['peak_rss_mb']:,.0f} MB"
            size = "—" if e["bytes_total"] is None else f"{e['bytes_total'] / 1e6:,.1f} MB"
            rounds_epochs = f"{e['rounds']} × {e['local_epochs']}"
        else:
            so_far = e.get("test_accuracy_so_far")
            ours = f"{e['status']} ({e['rounds_done']} rounds, {_pct(so_far)})"
            wall = rss = size = rounds_epochs = "—"
        lines.append(
            f"| {e['item']} | {e['label']} (`{e['config']}`) | {ours} | "
            f"{_pct(e['paper_accuracy'])} | {e['trainable_params'] or '—'} | {rounds_epochs} | "
            f"{e['clients'] or '—'} | {e['seed'] if e['seed'] is not None else '—'} | {wall} | "
            f"{rss} | {size} | {e['git_commit'] or '—'} |"
        )
    return "\n".join(lines)


def replace_section(text: str, table_md: str, source: str) -> str:
    """``text`` with the part between the markers replaced by ``table_md``."""
    if START not in text or END not in text:
        sys.exit(f"error: {source}: no {START} ... {END} markers to put the table between")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table_md}\n{END}{tail}"


def _train_args(row: dict[str, Any]) -> list[str]:
    """The ``qfed-qiskit train`` arguments of a row: its ``args``, else its config alone."""
    return list(row.get("args") or ["--config", row["config"]])


def _load_rows(rows_path: Path) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = tomllib.loads(rows_path.read_text())["row"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        sys.exit(f"error: {rows_path}: {exc} (expected a TOML file of [[row]] tables)")
    return rows


def _copy_files(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    """Copy the named files of ``src`` that exist into ``dest``, each atomically (a reader, or a
    commit, never sees half a checkpoint)."""
    for name in names:
        if (src / name).is_file():
            atomic_write_bytes(dest / name, (src / name).read_bytes())


def _train_mirrored(command: list[str], root: Path, run_dir: Path, dest: Path) -> None:
    """Run ``command``; whenever the run folder's checkpoint changes, mirror it and the metrics
    into ``dest``. Raises CalledProcessError (after a last mirror) when the run fails."""
    seen = -1
    with subprocess.Popen(command, cwd=root) as proc:
        while True:
            try:
                proc.wait(timeout=MIRROR_EVERY_S)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            checkpoint = run_dir / CHECKPOINT
            stamp = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else -1
            if stamp != seen:
                _copy_files(run_dir, dest, (CHECKPOINT, METRICS))
                seen = stamp
            if finished:
                break
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command)


def run_row(row: dict[str, Any], root: Path = ROOT, cli: list[str] | None = None) -> None:
    """Train (or resume) one row's run and copy its results into the row's ``results/`` folder.

    ``cli`` is the command that starts ``qfed-qiskit`` (default: the one beside this Python).
    """
    dest = root / row["run"]
    if (dest / "summary.json").is_file():
        print(f"[{row['id']}] done already: {dest / 'summary.json'}", flush=True)
        return
    args = _train_args(row)
    out = row.get("out") or tomllib.loads((root / row["config"]).read_text())["out"]
    run_dir = root / out
    exe = cli or [str(Path(sys.executable).with_name("qfed-qiskit"))]
    if not (run_dir / CHECKPOINT).is_file() and (dest / CHECKPOINT).is_file():
        # A fresh clone: the run folder is gone, the committed resume point is not.
        _copy_files(dest, run_dir, (CHECKPOINT, METRICS))
        print(f"[{row['id']}] restored {run_dir / CHECKPOINT} from {dest}", flush=True)
    if (run_dir / CHECKPOINT).is_file():
        command = [*exe, "train", "--resume", str(run_dir)]
    else:
        command = [*exe, "train", *args, "--out", str(run_dir), "--overwrite"]
    print(f"[{row['id']}] {shlex.join(command)}", flush=True)
    _train_mirrored(command, root, run_dir, dest)
    _copy_files(run_dir, dest, (METRICS, "summary.json"))  # the summary last: it marks "done"
    (dest / CHECKPOINT).unlink(missing_ok=True)  # finished: nothing left to resume
    if (run_dir / "report").is_dir():
        shutil.copytree(run_dir / "report", dest / "report", dirs_exist_ok=True)
    partition = json.loads((run_dir / "summary.json").read_text())["config"].get("partition")
    if partition not in (None, "iid"):  # non-IID rows: how evenly the model serves the clients
        script = Path(__file__).with_name("client_accuracy.py")
        spread = [sys.executable, str(script), str(run_dir), "--out", str(dest / CLIENT_ACCURACY)]
        subprocess.run(spread, cwd=root, check=True)
    print(f"[{row['id']}] results in {dest}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Build the table; write or check it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, default=ROOT / "results" / "paper_rows.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "paper_table.json")
    parser.add_argument("--results-md", type=Path, default=None)
    parser.add_argument("--root", type=Path, default=ROOT, help="folder the run paths are under")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    parser.add_argument("--run", nargs="+", default=[], metavar="ID", help="train these rows first")
    parser.add_argument(
        "--cli", default=None, help="command that starts qfed-qiskit (default: this venv's)"
    )
    args = parser.parse_args(argv)
    if args.run:
        rows = {row["id"]: row for row in _load_rows(args.rows)}
        unknown = [i for i in args.run if i not in rows]
        if unknown:
            sys.exit(f"error: --run {' '.join(unknown)}: not in {args.rows} ({', '.join(rows)})")
        for row_id in args.run:
            run_row(rows[row_id], args.root, shlex.split(args.cli) if args.cli else None)
    table = build_table(args.rows, args.root)
    text = json.dumps(table, indent=1) + "\n"
    table_md = render_markdown(table)
    stale = []
    if not args.out.is_file() or args.out.read_text() != text:
        stale.append(str(args.out))
        if not args.check:
            args.out.write_text(text)
    if args.results_md is not None:
        old = args.results_md.read_text()
        new = replace_section(old, table_md, str(args.results_md))
        if new != old:
            stale.append(str(args.results_md))
            if not args.check:
                args.results_md.write_text(new)
    print(table_md)
    if args.check and stale:
        print(
            f"out of date: {', '.join(stale)} (run python benchmarks/paper_table.py"
            " --results-md RESULTS.md)"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
