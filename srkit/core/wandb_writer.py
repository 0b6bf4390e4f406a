"""wandb logging of a training run (BasicSR's ``logger.wandb``): the scalars and images TensorBoard gets.

Why not BasicSR's ``sync_tensorboard=True``: that mirrors TensorBoard's event files, so wandb would log
nothing when tensorboard is absent or ``use_tb_logger`` is off. srkit logs to wandb directly instead, at the
iteration as wandb's step. wandb is an optional package; the options have checked that it is importable
before the experiment folder is made, and it is imported only here, only when a project is given.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from srkit.core.errors import SrkitError

__all__ = ['WandbWriter']


class WandbWriter:
    """One wandb run under ``<root>/wandb``, named ``name``; a no-op when ``project`` is None (BasicSR's rule).

    ``resume_id`` continues that wandb run (wandb's ``resume='allow'``, as BasicSR does), otherwise a new
    run starts. wandb keeps steps increasing: on a run resumed from an older training state, the iterations
    it already logged are not logged again.
    """

    def __init__(self, root: str | Path, *, project: str | None, entity: str | None, resume_id: str | None,
                 name: str, config: Mapping[str, Any]) -> None:
        self.run: Any = None
        if project is None:
            return
        import wandb

        self._image = wandb.Image
        try:
            self.run = wandb.init(project=project, entity=entity, name=name, id=resume_id,
                                  resume='allow' if resume_id else None, dir=str(root), config=dict(config),
                                  reinit='finish_previous')  # a new trainer in the same process: a new run
        except wandb.Error as exc:
            raise SrkitError(f'wandb could not start a run for logger.wandb (project "{project}"): '
                             f'{str(exc).rstrip(".")}. Log in with "wandb login", or set WANDB_MODE=offline to keep '
                             'the run in the experiment folder and upload it later with "wandb sync".',
                             key='logger.wandb') from None

    @property
    def active(self) -> bool:
        return self.run is not None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """Log an HWC uint8 RGB image (stored as a PNG beside the run's files)."""
        if self.run is not None:
            self.run.log({tag: self._image(image_hwc)}, step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
