"""``qfed-qiskit report``: the figures and a ``report.md`` of a run folder (finished or not)."""

from __future__ import annotations

import json
from pathlib import Path

from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.files import atomic_write_bytes
from qfed_qiskit.training.outputs import read_metrics

REPORT_FOLDER = "report"


def write_report(run: str | Path) -> Path:
    """Write ``<run>/report/report.md`` and its PNGs; returns the Markdown file.

    Raises:
        QFedInputError: If ``run`` has no ``metrics.jsonl`` (or it has no complete line).
    """
    from qfed_qiskit.study.plots import plot_run

    path = Path(run)
    if not (path / "metrics.jsonl").is_file():
        raise QFedInputError(f"--run {path}: no metrics.jsonl; point --run at a run folder")
    history = read_metrics(path)
    if not history:
        raise QFedInputError(f"--run {path}: metrics.jsonl has no complete line yet")
    out = path / REPORT_FOLDER
    pngs = plot_run(history, out)
    summary_path = path / "summary.json"
    summary = (
        json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    )
    federated = "round" in history[0]
    step = "round" if federated else "epoch"
    last = history[-1]
    lines = [f"# Run report: {path.name}", ""]
    if summary is None:
        lines.append(f"Unfinished run: {len(history)} {step}(s) so far.")
    else:
        lines.append(
            f"Finished: test accuracy **{100 * summary['test_accuracy']:.2f}%** after "
            f"{len(history)} {step}(s), {summary['trainable_params']:,} trainable parameters, "
            f"backend `{summary.get('backend')}`, {summary['wall_time_s']:.0f} s."
        )
    lines += [
        "",
        f"| {step} | test accuracy | test loss | train loss |",
        "| --- | --- | --- | --- |",
    ]
    for r in history:
        train = r.get("train_loss")
        lines.append(
            f"| {r[step]} | {100 * r['test_accuracy']:.2f}% | {r['test_loss']:.4f} | "
            f"{'' if train is None else f'{train:.4f}'} |"
        )
    if federated:
        lines += [
            "",
            f"Clients rejected in total: {sum(int(r['clients_rejected']) for r in history)}; "
            f"bytes sent: {sum(int(r['bytes_down']) + int(r['bytes_up']) for r in history):,}; "
            f"last round's client learning rates: {last.get('client_lr')}.",
        ]
    evals = sorted((path / "eval").glob("*.json")) if (path / "eval").is_dir() else []
    if evals:
        lines += ["", "| backend | shots | accuracy | exact | TV distance | method |"]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for file in evals:
            e = json.loads(file.read_text(encoding="utf-8"))
            lines.append(
                f"| {e['backend']} | {e['shots']} | {100 * e['accuracy_mean']:.2f} ± "
                f"{100 * e['accuracy_std']:.2f}% | {100 * e['exact_accuracy']:.2f}% | "
                f"{e['tv_distance_mean']:.4f} | {e['method']} |"
            )
    lines += ["", *(f"![{p.stem}]({p.name})" for p in pngs), ""]
    report = out / "report.md"
    atomic_write_bytes(report, "\n".join(lines).encode())
    return report
