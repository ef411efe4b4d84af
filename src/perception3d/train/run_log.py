"""A training run's record beside its checkpoint: `<out>.log.jsonl` (one JSON object per step and per validation)
and, when the run ends, `<out>.curves.png` (training loss per step and the validation headline metric per epoch).

Step lines: {"kind": "step", "epoch", "step", "loss", "lr", "samples_per_s", and the loss parts}.
Validation lines: {"kind": "validation", "epoch", "step", "loss" (mean training loss of the epoch), metrics...}.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def log_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".log.jsonl")


def curves_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".curves.png")


def _plain(value):
    """JSON-safe: NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class RunLog:
    """Appends a run's steps and validations to its JSON-lines log; draws the curves on close."""

    def __init__(self, checkpoint: Path, headline: str, append: bool = False) -> None:
        self.path, self.png, self.headline = log_path(checkpoint), curves_path(checkpoint), headline
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if append else "w")

    def _write(self, entry: dict) -> None:
        self._file.write(json.dumps(_plain(entry)) + "\n")
        self._file.flush()

    def step(self, epoch: int, step: int, loss: float, parts: dict[str, float], lr: float,
             samples_per_s: float) -> None:
        self._write({"kind": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr,
                     "samples_per_s": round(samples_per_s, 2), **parts})

    def validation(self, entry: dict) -> None:
        self._write({"kind": "validation", **entry})

    def close(self) -> None:
        self._file.close()
        draw_curves(self.path, self.png, self.headline)


def read_log(path: Path) -> list[dict]:
    """The entries of a JSON-lines run log."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def draw_curves(log: Path, png: Path, headline: str) -> Path:
    """PNG of the training loss per step (with a moving average) and the validation `headline` per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    entries = read_log(log)
    steps = [(e["step"], e["loss"]) for e in entries if e["kind"] == "step" and e["loss"] is not None]
    validations = [(e["epoch"], e.get(headline)) for e in entries if e["kind"] == "validation"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    if steps:
        x, y = zip(*steps)
        left.plot(x, y, color="0.75", linewidth=0.8, label="step")
        window = max(1, len(y) // 50)
        if window > 1:
            smooth = [sum(y[max(0, i - window + 1):i + 1]) / len(y[max(0, i - window + 1):i + 1]) for i in
                      range(len(y))]
            left.plot(x, smooth, color="C0", linewidth=1.5, label=f"mean of {window}")
        left.legend(loc="upper right")
    left.set(xlabel="optimizer step", ylabel="training loss", title="loss")
    points = [(e, v) for e, v in validations if v is not None]
    if points:
        right.plot(*zip(*points), marker="o", color="C1")
    right.set(xlabel="epoch", ylabel=headline, title=f"validation {headline}")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png)
    plt.close(figure)
    return png
