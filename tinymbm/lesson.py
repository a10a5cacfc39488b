"""What every lesson script shares: its command line, its clock and where its plots go.

Each lesson runs as ``python lessons/NN_name.py`` with the same options::

    --data-dir DIR   folder with the real data (else TINYMBM_DATA, the cache, or synthetic digits)
    --epochs N       training epochs
    --limit N        quick mode: use only the first N training examples
    --out DIR        where the PNG plots are written
    --seed N         the seed of every random draw
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import tinymbm as tm


def parse_args(description: str, name: str, epochs: int = 1, limit: int | None = None,
               extra: list[tuple[tuple, dict]] | None = None) -> argparse.Namespace:
    """Parse the lesson options (unknown arguments, such as a notebook kernel's, are ignored).

    Args:
        description: the lesson's one-line summary, shown by --help.
        name: the lesson's file stem, e.g. "06_cnn_mnist"; plots go to out/<name> by default.
        epochs: the default number of training epochs.
        limit: the default number of training examples (None: all of them).
        extra: additional ``(args, kwargs)`` pairs for ``add_argument``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the real data; default: $TINYMBM_DATA, then ~/.cache/tinymbm")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    parser.add_argument("--limit", type=int, default=limit,
                        help="quick mode: use only the first N training examples (default: all)")
    parser.add_argument("--out", default=str(Path("out") / name), help=f"folder for the plots (default out/{name})")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    for args, kwargs in extra or []:
        parser.add_argument(*args, **kwargs)
    argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    options, _ = parser.parse_known_args(argv)
    if options.epochs < 0:
        parser.error(f"--epochs must be >= 0, got {options.epochs}")
    if options.limit is not None and options.limit <= 0:
        parser.error(f"--limit must be a positive number of examples, got {options.limit}")
    Path(options.out).mkdir(parents=True, exist_ok=True)
    tm.manual_seed(options.seed)
    os.environ.setdefault("MPLBACKEND", "Agg")
    return options


class Clock:
    """Wall time since the lesson started; ``report()`` prints it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def report(self) -> None:
        print(f"wall time: {self.seconds():.1f} s")


def save_figure(figure: Any, out_dir: str | Path, filename: str) -> Path:
    """Save a matplotlib figure as PNG under ``out_dir``, close it, and print the path."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.stem + ".partial.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    os.replace(temporary, path)
    plt.close(figure)
    print(f"saved plot: {path}")
    return path
