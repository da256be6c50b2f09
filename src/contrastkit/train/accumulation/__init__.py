"""One optimizer step's forward and backward, over `train.accumulate` micro-batches.

A contrastive loss couples every row of the batch, so how a step is split decides which
negatives each row sees (docs/accumulation.md). In the order things happen:
`context.py` (`StepContext`, `split_batch`) carries the engine's AMP, loss-scaling and DDP
choices into the step and cuts the batch; `step.py` (`accumulation_step`, `single_step`)
dispatches on `train.accumulation`: `cached.py` (`cached_step`, GradCache: the loss and
gradients of the whole accumulated batch, exactly) or `naive.py` (`naive_step`: each
micro-batch keeps its own negatives); `terms.py` keeps every per-unit term as a sum and a
count, so the step divides once by the global count.
"""

from contrastkit.train.accumulation.cached import cached_step
from contrastkit.train.accumulation.context import StepContext, batch_size_of, split_batch
from contrastkit.train.accumulation.naive import naive_step
from contrastkit.train.accumulation.step import accumulation_step, single_step

__all__ = [
    "StepContext",
    "accumulation_step",
    "batch_size_of",
    "cached_step",
    "naive_step",
    "single_step",
    "split_batch",
]
