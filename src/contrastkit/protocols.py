"""What evaluation, search and the report need of a model and of a split's dataset.

The application passes a `ContrastiveModel` and a `ManifestDataset` (a shard split is
extracted into one for evaluation), but the functions that embed, rank and show rows use
only a few of their members. These protocols name those members, so mypy checks every
call site and a test may pass a toy `nn.Module` that has just these.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from contrastkit.data.manifest import Row
from contrastkit.pairing import HasTowerInputs


class HasEmbedding(Protocol):
    """One tower's output, as far as retrieval is concerned."""

    @property
    def embedding(self) -> Tensor:
        """B x D, L2-normalised."""
        ...


class EmbeddingModel(HasTowerInputs, Protocol):
    """A model that embeds each tower's inputs into the shared space.

    `parameters`, `training`, `eval` and `train` are `nn.Module`'s: evaluation finds the
    device from the parameters and restores the train/eval mode it found.
    """

    training: bool

    @property
    def tower_names(self) -> list[str]:
        """Every tower, in config order."""
        ...

    def encode(self, tower: str, batch: Mapping[str, Any]) -> HasEmbedding:
        """One tower's output for `batch` (only that tower's input columns are needed)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The module's parameters (`nn.Module.parameters`)."""
        ...

    def eval(self) -> Any:
        """Switch to evaluation mode (`nn.Module.eval`)."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Switch to training mode, or back with `mode=False` (`nn.Module.train`)."""
        ...


class SplitDataset(Protocol):
    """The rows of one split and the samples built from them."""

    @property
    def rows(self) -> Sequence[Row]:
        """The manifest rows, in dataset order."""
        ...

    @property
    def group_ids(self) -> np.ndarray:
        """Dense group index of each row (N, int64)."""
        ...

    @property
    def columns(self) -> Collection[str]:
        """The input columns the split's rows hold (`label` included when labelled)."""
        ...

    def __len__(self) -> int:
        """Number of rows."""
        ...

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Row `i` as a sample dict (`index`, `id`, `group_id` and its input columns)."""
        ...


class CaptioningModel(EmbeddingModel, Protocol):
    """An embedding model with a captioning head (`has_captioning` is True)."""

    text_column: str

    def generate(
        self,
        batch: Mapping[str, Any],
        *,
        method: str = "greedy",
        beam_size: int = 4,
        max_length: int = 48,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> list[str]:
        """Captions for the batch, decoded to text."""
        ...
