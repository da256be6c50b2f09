"""The best value of the selection metric (`train.select_metric`), and early stopping on it.

Kept apart from the engine so its rules (default metric missing -> no best checkpoint,
user-set metric missing -> config error, `min_delta`, `patience`) read in one place and its
state travels in the checkpoint as plain JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from contrastkit.errors import ConfigError

log = logging.getLogger(__name__)


class BestTracker:
    """Tracks the selection metric over evaluations.

    Args:
        metric: metric key, or None for no tracking.
        user_set: True when the user named `train.select_metric` (a missing key is then an error
            rather than a warning).
        mode: `max` or `min`.
        min_delta: smallest change that counts as an improvement (metric units).
        patience: evaluations without improvement before stopping; None = never stop.
    """

    def __init__(
        self,
        metric: str | None,
        *,
        user_set: bool,
        mode: str = "max",
        min_delta: float = 0.0,
        patience: int | None = None,
    ) -> None:
        self.metric, self.user_set = metric, user_set
        self.sign = 1.0 if mode == "max" else -1.0
        self.min_delta, self.patience = min_delta, patience
        self.best: float | None = None
        self.bad_evals = 0
        self.stop = False

    def observe(self, metrics: dict[str, float]) -> bool:
        """Take one evaluation's metrics; True when the selection metric improved.

        Raises:
            ConfigError: a user-set metric is not among the metrics.
        """
        if not self.metric:
            return False
        if self.metric not in metrics:
            if self.user_set:
                raise ConfigError(
                    f"train.select_metric: {self.metric!r} is not among the eval metrics: "
                    f"{', '.join(sorted(metrics)[:20])}"
                )
            log.warning(
                "default select metric %s is not among the eval metrics; no best checkpoint",
                self.metric,
            )
            self.metric = None
            return False
        value = float(metrics[self.metric])
        improved = self.best is None or self.sign * (value - self.best) > self.min_delta
        if improved:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        self.stop = self.patience is not None and self.bad_evals >= self.patience
        return improved

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to keep tracking (saved in every checkpoint)."""
        return {
            "best": self.best,
            "monitor": self.metric,
            "bad_evals": self.bad_evals,
            "stop": self.stop,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.best, self.bad_evals = state["best"], state["bad_evals"]
        self.stop = state["stop"]
        if "monitor" in state:
            self.metric = state["monitor"]
