"""Figures: PSNR vs Multi-Adds (bubble area = params), and training curves parsed from a run's log file.

matplotlib is an optional extra: it is imported inside the plotting functions only, and its absence is a
user error naming the package. Parsing needs nothing beyond the standard library, so curves can also be
read into other tools.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srkit.core.errors import DataError, SrkitError
from srkit.engine.tester import read_results

__all__ = ['TradeoffPoint', 'tradeoff_points', 'plot_psnr_vs_macs', 'psnr_vs_macs_figure', 'TrainingLog',
           'parse_training_log', 'read_tensorboard_scalars', 'plot_training_curves']

# Lines written by srkit.core.logger.ProgressLog and the trainer's validation (see srkit/engine/trainer.py).
_ITER = re.compile(r'\[iter\s+(\d+)/\d+\]\s+(.*?)\s+lr:\s*(\S+)\s+\|')
_PAIR = re.compile(r'(\S+):\s*(\S+)')
_VAL = re.compile(r'Validation (\S+) @ iter (\d+)(?: \(([^)]*)\))?: (.*)$')  # (label): which weights
_BICUBIC = re.compile(r'Validation (\S+), bicubic baseline: (.*)$')
_METRIC = re.compile(r'(\w+): ([-+\d.eE]+|inf|nan)')


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SrkitError('Plotting needs the optional package "matplotlib": pip install matplotlib '
                         '(or the "plot" extra: pip install -e .[plot]).') from None
    matplotlib.use('Agg')  # files only: works without a display
    import matplotlib.pyplot as plt
    return plt


# ---- PSNR vs Multi-Adds -------------------------------------------------------------------------------------
@dataclass
class TradeoffPoint:
    label: str
    macs: int
    params: int
    psnr: float


def tradeoff_points(results_files: list[Path], complexity: dict[tuple[str, int], tuple[int, int]], dataset: str,
                    scale: int | None = None, metric: str = 'psnr') -> list[TradeoffPoint]:
    """One point per results.json (test.py) that has ``dataset``; ``complexity`` maps (arch, scale) to
    (params, macs). Runs of other scales are left out when ``scale`` is given."""
    points = []
    for path in results_files:
        summary = read_results(Path(path))
        arch, run_scale, means = summary.arch, summary.scale, summary.means
        if (scale is not None and run_scale != scale) or metric not in means.get(dataset, {}):
            continue
        if (arch, run_scale) not in complexity:
            raise DataError(f'{path}: no complexity row for {arch} x{run_scale}; add it to the complexity table.')
        params, macs = complexity[arch, run_scale]
        points.append(TradeoffPoint(summary.name, macs, params, float(means[dataset][metric])))
    if not points:
        raise DataError(f'No results of {dataset}' + (f' at x{scale}' if scale else '') + ' among the files given.')
    return points


def plot_psnr_vs_macs(points: list[TradeoffPoint], out: str | Path, *, title: str = '', ylabel: str = 'PSNR (dB)',
                      log_x: bool | None = None) -> None:
    """The trade-off figure lightweight-SR papers lead with: x = Multi-Adds, y = PSNR, bubble area ~ params."""
    fig = psnr_vs_macs_figure(points, title=title, ylabel=ylabel, log_x=log_x)
    _save(fig, out, layout=False)  # laid out before the labels were placed: another layout would move them


def psnr_vs_macs_figure(points: list[TradeoffPoint], *, title: str = '', ylabel: str = 'PSNR (dB)',
                        log_x: bool | None = None) -> Any:
    """The figure of ``plot_psnr_vs_macs``, returned unsaved so its label positions can be inspected.

    ``log_x`` None picks a logarithmic axis when Multi-Adds span more than 20x, where a linear one would
    pile the small models into one corner. Models of similar cost and PSNR sit on top of each other, so
    each label goes to the first of several positions around its bubble where it overlaps no label placed
    before it, no bubble and nothing outside the axes (``_place_labels``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5), dpi=150)
    biggest = max(p.params for p in points) or 1
    colours = plt.get_cmap('tab10')
    ordered = sorted(points, key=lambda q: (q.macs, q.psnr))
    areas = [60 + 1400 * p.params / biggest for p in ordered]
    for i, (p, area) in enumerate(zip(ordered, areas)):
        ax.scatter(p.macs / 1e9, p.psnr, s=area, alpha=0.55, color=colours(i % 10), edgecolors='black', linewidths=0.6)
    macs = [p.macs for p in points]
    if log_x if log_x is not None else max(macs) > 20 * max(min(macs), 1):
        from matplotlib.ticker import FormatStrFormatter
        ax.set_xscale('log')
        ax.xaxis.set_major_formatter(FormatStrFormatter('%g'))  # 1, 10, 100 rather than 10^0, 10^1
    ax.set_xlabel('Multi-Adds (G), 1280x720 output')
    ax.set_ylabel(ylabel)
    ax.set_title(title or 'PSNR vs Multi-Adds (bubble area: parameters)')
    ax.grid(True, alpha=0.3, which='both')
    ax.margins(0.15)
    ax.set_xlim(ax.get_xlim())  # fixed from here on: label positions are worked out in pixels
    ax.set_ylim(ax.get_ylim())
    fig.tight_layout()
    _place_labels(fig, ax, [((p.macs / 1e9, p.psnr), f'{p.label} ({p.params / 1e3:.0f}K)', area)
                            for p, area in zip(ordered, areas)])
    return fig


# Directions tried around a bubble, in order: above, below, right, left, then the four diagonals.
_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
_ALIGN = {-1: ('right', 'top'), 0: ('center', 'center'), 1: ('left', 'bottom')}


def _place_labels(fig: Any, ax: Any, labels: list[tuple[tuple[float, float], str, float]]) -> None:
    """Annotate each (data point, text, marker area in points^2) at the first candidate position whose box
    overlaps no earlier label, no marker and does not leave the axes: 8 directions at growing distances.
    When every candidate collides (a crowded figure), the one overlapping least is kept. Deterministic: the
    same points always give the same figure."""
    renderer = fig.canvas.get_renderer()
    to_pixels = fig.dpi / 72
    markers = []
    for xy, _, area in labels:
        cx, cy = ax.transData.transform(xy)
        r = (area ** 0.5 / 2 + 0.6) * to_pixels  # the marker's radius plus its edge, in pixels
        markers.append((cx - r, cy - r, cx + r, cy + r))
    frame = ax.get_window_extent(renderer)
    placed: list[tuple[float, float, float, float]] = []
    for xy, text, area in labels:
        annotation = ax.annotate(text, xy, xytext=(0, 0), textcoords='offset points', fontsize=7)
        gap = area ** 0.5 / 2 + 3
        best: tuple[float, tuple[float, float], str, str, tuple[float, float, float, float]] | None = None
        for distance, (dx, dy) in ((gap + 8 * ring, d) for ring in range(4) for d in _DIRECTIONS):
            offset, ha, va = (dx * distance, dy * distance), _ALIGN[dx][0], _ALIGN[dy][1] if dy else 'center'
            annotation.set_position(offset)
            annotation.set_horizontalalignment(ha)
            annotation.set_verticalalignment(va)
            box = annotation.get_window_extent(renderer)
            extent = (box.x0, box.y0, box.x1, box.y1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            cost = sum(_overlap(extent, other) for other in placed + markers) + (0 if inside else box.width)
            if best is None or cost < best[0]:
                best = (cost, offset, ha, va, extent)
            if cost == 0:
                break
        assert best is not None
        _, offset, ha, va, extent = best
        annotation.set_position(offset)
        annotation.set_horizontalalignment(ha)
        annotation.set_verticalalignment(va)
        placed.append(extent)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes; 0 when they only touch or are apart."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _save(fig: Any, out: str | Path, *, layout: bool = True) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(out)
    import matplotlib.pyplot as plt
    plt.close(fig)


# ---- training curves ----------------------------------------------------------------------------------------
@dataclass
class TrainingLog:
    """Series keyed by name, each a sorted list of (iteration, value). A resumed run's later lines win."""

    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lr: list[tuple[int, float]] = field(default_factory=list)
    validation: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # '<set> <metric>'
    bicubic: dict[str, float] = field(default_factory=dict)                        # '<set> <metric>'


def _log_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(source.glob('train_*.log')) if source.is_dir() else []
    if not files:
        raise DataError(f'{source}: no training log (an experiments/<name>/ folder holds train_<name>_<time>.log).')
    return files  # timestamps in the names: oldest first, so a resumed run's lines come last


def parse_training_log(source: str | Path) -> TrainingLog:
    """Losses, learning rate and validation metrics from a log file, or from every log of an experiment
    folder (one per start or resume, read in time order)."""
    series: dict[str, dict[int, float]] = {}
    bicubic: dict[str, float] = {}
    for path in _log_files(Path(source)):
        for line in path.read_text(encoding='utf-8', errors='replace').splitlines():
            if m := _ITER.search(line):
                it = int(m.group(1))
                for name, value in _PAIR.findall(m.group(2)):
                    series.setdefault(f'loss {name}', {})[it] = float(value)
                series.setdefault('lr', {})[it] = float(m.group(3))
            elif m := _VAL.search(line):
                dataset = m.group(1) + (' (raw weights)' if m.group(3) == 'raw weights' else '')  # beside a young EMA
                for name, value in _METRIC.findall(re.sub(r'\(best[^)]*\)', '', m.group(4))):
                    series.setdefault(f'val {dataset} {name}', {})[int(m.group(2))] = float(value)
            elif m := _BICUBIC.search(line):
                for name, value in _METRIC.findall(m.group(2)):
                    bicubic[f'{m.group(1)} {name}'] = float(value)
    log = TrainingLog(bicubic=bicubic)
    for key, points in series.items():
        ordered = sorted(points.items())
        if key == 'lr':
            log.lr = ordered
        elif key.startswith('loss '):
            log.losses[key[5:]] = ordered
        else:
            log.validation[key[4:]] = ordered
    if not log.lr:
        raise DataError(f'{source}: no "[iter N/M] ..." progress lines; is it a srkit training log?')
    return log


def read_tensorboard_scalars(folder: str | Path) -> TrainingLog:
    """The same series from TensorBoard events (experiments/<name>/tb_logger): losses/*, lr, val/<set>/<metric>."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise SrkitError('Reading TensorBoard events needs the optional package "tensorboard": '
                         'pip install tensorboard.') from None
    accumulator = EventAccumulator(str(folder), size_guidance={'scalars': 0})
    accumulator.Reload()
    log = TrainingLog()
    for tag in accumulator.Tags().get('scalars', []):
        points = sorted({e.step: e.value for e in accumulator.Scalars(tag)}.items())
        if tag == 'lr':
            log.lr = points
        elif tag.startswith('losses/'):
            log.losses[tag.split('/', 1)[1]] = points
        elif tag.startswith('val/'):
            log.validation[' '.join(tag.split('/')[1:])] = points
    if not log.lr and not log.losses:
        raise DataError(f'{folder}: no srkit scalars (losses/*, lr) in TensorBoard events.')
    return log


def plot_training_curves(log: TrainingLog, out: str | Path, *, title: str = '') -> None:
    """Panels: losses (log scale), learning rate, then one per validation metric (PSNR and SSIM differ in
    range, so they never share an axis), each set with its bicubic baseline dashed."""
    plt = _pyplot()
    metrics = sorted({key.rsplit(' ', 1)[1] for key in log.validation})
    panels = 2 + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.8), dpi=130, squeeze=False)
    axes = axes[0]
    for name, points in log.losses.items():
        axes[0].plot(*zip(*points), label=name)
    axes[0].set_yscale('log')
    axes[0].set_title('training losses')
    axes[0].legend(fontsize=8)
    axes[1].plot(*zip(*log.lr), color='tab:orange')
    axes[1].set_title('learning rate')
    for ax, metric in zip(axes[2:], metrics):
        keys = [k for k in log.validation if k.rsplit(' ', 1)[1] == metric]
        for i, key in enumerate(keys):
            dataset = key.rsplit(' ', 1)[0]
            ax.plot(*zip(*log.validation[key]), marker='o', markersize=3, color=f'C{i}', label=dataset)
            if key in log.bicubic:
                ax.axhline(log.bicubic[key], color=f'C{i}', linestyle='--', linewidth=1, label=f'{dataset} bicubic')
        ax.set_title(f'validation {metric}')
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    _save(fig, out)
