"""Figures of the noise study and of training runs.

Figures are built as :class:`matplotlib.figure.Figure` objects, not through pyplot: no display or
backend is needed to save them, and a figure returned into Jupyter is shown once (pyplot would
show its own copy at the end of the cell as well).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def new_figure(**kwargs: Any) -> Any:
    """A figure that belongs to no pyplot window (``kwargs`` go to ``Figure``)."""
    if "ipykernel" in sys.modules:
        # The inline backend registers Jupyter's figure display when pyplot first loads it.
        import matplotlib.pyplot  # noqa: F401
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    return path


def _integer_x(*axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write :func:`sweep_figure` to ``path`` (``sweep.png``)."""
    return save_figure(sweep_figure(rows), path)


def sweep_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """Accuracy vs noise level (left) and vs shots (right) of a noise sweep's rows.

    Left: one line per mode at the most shots of the sweep (exact when it has them), error bars
    from the repeats; fake devices as horizontal dotted lines. Right: accuracy vs shots, one line
    per (mode, level).
    """
    fig = new_figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    level_rows = [r for r in rows if r["device"] is None]
    shots_all = sorted({r["shots"] for r in level_rows}, key=lambda s: (s == 0, s))
    best = shots_all[-1] if shots_all else 0
    levels = sorted({r["level"] for r in level_rows})
    positive = [lvl for lvl in levels if lvl > 0]
    zero_at = min(positive) / 10 if positive else 1e-5  # level 0 drawn left of the smallest

    def x_of(level: float) -> float:
        return level if level > 0 else zero_at

    for mode, marker in (("ideal-train", "o"), ("noise-aware", "s")):
        points = sorted(
            (r for r in level_rows if r["mode"] == mode and r["shots"] == best),
            key=lambda r: r["level"],
        )
        if mode == "noise-aware" and points:  # its level-0 point is the ideal model
            points = [
                r
                for r in level_rows
                if r["model"] == "ideal" and r["level"] == 0 and r["shots"] == best
            ] + points
        if not points:
            continue
        left.errorbar(
            [x_of(r["level"]) for r in points],
            [100 * r["accuracy_mean"] for r in points],
            yerr=[100 * r["accuracy_std"] for r in points],
            marker=marker,
            capsize=3,
            label=f"{mode} ({'exact' if best == 0 else f'{best:g} shots'})",
        )
    for i, r in enumerate(r for r in rows if r["device"] is not None and r["model"] == "ideal"):
        left.axhline(
            100 * r["accuracy_mean"],
            linestyle=":",
            color=f"C{i + 2}",
            label=f"ideal-train on {r['device']} ({r['shots']} shots)",
        )
    left.set_xscale("log")
    if positive:
        ticks = [zero_at, *positive]
        left.set_xticks(ticks, ["0", *(f"{lvl:g}" for lvl in positive)])
    left.set_xlabel("depolarizing level l (p1 = l, p2 = readout = 10 l)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("Accuracy vs gate noise")
    left.grid(alpha=0.3)
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)

    finite = [s for s in shots_all if s > 0]
    exact_x = max(finite) * 10 if finite else 1.0

    def shot_budget(model: str) -> int:
        return int(model.rsplit("-", 1)[1]) if model.startswith("shot-aware") else 0

    shot_models = sorted(
        {r["model"] for r in level_rows if shot_budget(r["model"])}, key=shot_budget
    )
    for model, level in sorted(
        {(r["model"], r["level"]) for r in level_rows},
        key=lambda k: (k[1], k[0] != "ideal", shot_budget(k[0])),
    ):
        # One colour per level (solid ideal-train, dashed noise-aware); shot-aware models, dotted,
        # get colours of their own after the levels'.
        i = (
            levels.index(level)
            if not shot_budget(model)
            else len(levels) + shot_models.index(model)
        )
        points = sorted(
            (r for r in level_rows if r["model"] == model and r["level"] == level),
            key=lambda r: (r["shots"] == 0, r["shots"]),
        )
        style = {"ideal": "-"}.get(model, ":" if model.startswith("shot-aware") else "--")
        right.errorbar(
            [r["shots"] if r["shots"] else exact_x for r in points],
            [100 * r["accuracy_mean"] for r in points],
            yerr=[100 * r["accuracy_std"] for r in points],
            linestyle=style,
            marker="o",
            capsize=3,
            color=f"C{i % 10}",
            label=model
            if model.startswith("shot-aware")
            else (f"{'ideal-train' if model == 'ideal' else 'noise-aware'}, level {level:g}"),
        )
    right.set_xscale("log")
    if finite:
        labels = [f"{s:.0e}".replace("e+0", "e").replace("e+", "e") for s in finite]
        right.set_xticks([*finite, exact_x], [*labels, "exact"])
    right.set_xlabel("shots per evaluation")
    right.set_ylabel("test accuracy (%)")
    right.set_title("Accuracy vs shots")
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def run_figure(history: Sequence[dict[str, Any]]) -> Any:
    """Accuracy (left) and loss (right) per round or epoch of a run's ``metrics.jsonl`` lines."""
    federated = "round" in history[0]
    step = "round" if federated else "epoch"
    xs = [r[step] for r in history]
    fig = new_figure(figsize=(11, 4))
    acc, loss = fig.subplots(1, 2)
    acc.plot(xs, [100 * r["test_accuracy"] for r in history], marker=".", label="test")
    if not federated:
        acc.plot(xs, [100 * r["train_accuracy"] for r in history], marker=".", label="train")
    acc.set_xlabel(step)
    acc.set_ylabel("accuracy (%)")
    acc.set_title("Accuracy")
    acc.grid(alpha=0.3)
    acc.legend()
    loss.plot(xs, [r["test_loss"] for r in history], marker=".", label="test loss")
    train = [(x, r.get("train_loss")) for x, r in zip(xs, history, strict=True)]
    train = [(x, v) for x, v in train if v is not None]
    label = "mean client loss" if federated else "train loss"
    loss.plot([x for x, _ in train], [v for _, v in train], marker=".", label=label)
    loss.set_xlabel(step)
    loss.set_ylabel("cross-entropy")
    loss.set_title("Loss")
    loss.grid(alpha=0.3)
    loss.legend()
    _integer_x(acc, loss)
    return fig


def plot_run(history: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """PNGs of a run's ``metrics.jsonl``: accuracy and loss; for federated runs also bytes per
    round, rejected clients and the clients' learning rates."""
    if not history:
        return []
    federated = "round" in history[0]
    xs = [r["round" if federated else "epoch"] for r in history]
    paths = [save_figure(run_figure(history), out / "accuracy_loss.png")]
    if not federated:
        return paths

    fig = new_figure(figsize=(11, 4))
    comm, rejected = fig.subplots(1, 2)
    comm.plot(xs, [r["bytes_down"] / 1e3 for r in history], marker=".", label="down")
    comm.plot(xs, [r["bytes_up"] / 1e3 for r in history], marker=".", label="up")
    comm.set_xlabel("round")
    comm.set_ylabel("kB per round")
    comm.set_title("Communication")
    comm.set_ylim(bottom=0)
    comm.grid(alpha=0.3)
    comm.legend()
    rejected.bar(xs, [r["clients_rejected"] for r in history], color="C3", label="rejected")
    rejected.plot(xs, [r["clients_ok"] for r in history], "k.", label="accepted")
    rejected.set_xlabel("round")
    rejected.set_ylabel("clients")
    rejected.set_title("Clients accepted and rejected")
    rejected.grid(alpha=0.3)
    rejected.legend()
    rejected.yaxis.get_major_locator().set_params(integer=True)
    _integer_x(comm, rejected)
    paths.append(save_figure(fig, out / "clients_bytes.png"))

    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    clients = sorted({c for r in history for c in r.get("accepted", [])})
    for cid in clients:
        pts = [
            (r["round"], lr)
            for r in history
            for c, lr in zip(r.get("accepted", []), r.get("client_lr", []), strict=False)
            if c == cid and lr is not None
        ]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"client {cid}")
    ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("learning rate after the round")
    ax.set_title("Client learning rates")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no client_lr in these metrics", ha="center", transform=ax.transAxes)
    _integer_x(ax)
    paths.append(save_figure(fig, out / "client_lr.png"))
    return paths
