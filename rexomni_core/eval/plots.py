"""What every evaluation plot does last: lay the figure out, write it, free it."""

from __future__ import annotations

from pathlib import Path


def save_figure(figure, path: str | Path) -> Path:
    """Write a matplotlib figure (grid on, tight layout) to `path` and close it; the path."""
    import matplotlib.pyplot as plt

    for axes in figure.axes:
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
