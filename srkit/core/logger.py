"""Logging for runs: a log file plus the console (main process only), progress lines, TensorBoard, wandb."""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, TextIO

import numpy as np

from srkit.core.wandb_writer import WandbWriter

__all__ = ['setup_logger', 'ProgressLog', 'TensorboardWriter', 'RunWriters', 'format_seconds']

LOGGER_NAME = 'srkit'


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now (it may be replaced after set-up, e.g. by a test runner)."""

    _srkit_console = True

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logger(log_file: str | Path | None = None, is_main: bool = True) -> logging.Logger:
    """The 'srkit' logger: console and (main process) file output; other ranks log errors only."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if is_main else logging.ERROR)
    logger.propagate = False
    fmt = logging.Formatter('%(asctime)s %(levelname)s: %(message)s', datefmt='%Y-%m-%d %H:%M:%S')
    if not any(getattr(h, '_srkit_console', False) for h in logger.handlers):
        console = _ConsoleHandler()
        console.setFormatter(fmt)
        logger.addHandler(console)
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(handler)
        handler.close()
    if log_file is not None and is_main:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding='utf-8')
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '?'
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours else f'{rest // 60}:{rest % 60:02d}'


class ProgressLog:
    """Progress of a training run: a line every ``print_freq`` iterations (iteration, losses, lr, it/s, ETA).

    Lines go to the log (and so to the log file), which also reads well where stdout is not a terminal (CI,
    SLURM); a tqdm bar is added on an interactive terminal.
    """

    def __init__(self, logger: logging.Logger, start_iter: int, total_iter: int, print_freq: int,
                 show_bar: bool | None = None) -> None:
        self.logger = logger
        self.start_iter = start_iter
        self.total_iter = total_iter
        self.print_freq = max(1, print_freq)
        self.start_time = time.perf_counter()
        self.bar = None
        if (sys.stdout.isatty() if show_bar is None else show_bar) and logger.isEnabledFor(logging.INFO):
            from tqdm import tqdm
            self.bar = tqdm(total=total_iter, initial=start_iter, unit='it', dynamic_ncols=True, leave=False)

    def update(self, current_iter: int, losses: Mapping[str, float], lr: float, extra: str = '') -> None:
        if self.bar is not None:
            self.bar.update(current_iter - self.bar.n)
            self.bar.set_postfix({k: f'{v:.4g}' for k, v in losses.items()} | {'lr': f'{lr:.2e}'}, refresh=False)
        if current_iter % self.print_freq and current_iter != self.total_iter:
            return
        elapsed = time.perf_counter() - self.start_time
        done = current_iter - self.start_iter
        speed = done / elapsed if elapsed > 0 else float('nan')
        eta = (self.total_iter - current_iter) / speed if speed > 0 else float('inf')
        loss_text = ' '.join(f'{k}: {v:.4e}' for k, v in losses.items())
        message = (f'[iter {current_iter:>{len(str(self.total_iter))}}/{self.total_iter}] {loss_text} '
                   f'lr: {lr:.3e} | {speed:.2f} it/s, eta {format_seconds(eta)}{extra}')
        if self.bar is not None:
            self.bar.write(message, file=sys.stdout)
            for handler in self.logger.handlers:
                if not getattr(handler, '_srkit_console', False):
                    handler.handle(self.logger.makeRecord(self.logger.name, logging.INFO, '', 0, message, (), None))
        else:
            self.logger.info(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorboardWriter:
    """TensorBoard scalars and images when tensorboard is installed; otherwise a no-op with one warning."""

    def __init__(self, log_dir: str | Path | None, logger: logging.Logger) -> None:
        self.writer: Any = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning('tensorboard is not installed: TensorBoard logging is off (pip install tensorboard).')
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def active(self) -> bool:
        return self.writer is not None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """Log an HWC uint8 RGB image."""
        if self.writer is not None:
            self.writer.add_image(tag, image_hwc, step, dataformats='HWC')

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class RunWriters:
    """Where a run's scalars and images go (TensorBoard, wandb): each call reaches every writer that is on.

    ``active`` tells the caller whether anything listens, so that it computes an image only when it is logged.
    """

    def __init__(self, *writers: TensorboardWriter | WandbWriter) -> None:
        self.writers = [writer for writer in writers if writer.active]

    @property
    def active(self) -> bool:
        return bool(self.writers)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for writer in self.writers:
            writer.scalars(values, step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """Log an HWC uint8 RGB image (the 8-bit image a user would save)."""
        for writer in self.writers:
            writer.image(tag, image_hwc, step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
