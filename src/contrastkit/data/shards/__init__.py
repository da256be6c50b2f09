"""`data.shards`: training from WebDataset shards, streamed (`contrastkit shard` writes them).

In the order things happen:
1. `writer.py` (`write_shards`, `contrastkit shard`): a manifest becomes tar shards, one
   tar sample per match group, and an `index.json` of splits and counts (`INDEX_NAME`);
2. `splits.py` (`resolve_shards`, `ShardSplit`, `extracted_split`, `ShardBatches`): the
   shards of each split; the train split streams, the others are extracted for evaluation;
3. `plan.py`: an epoch's plan (which shards each rank and worker reads, the shuffle buffer,
   the position to resume from, exactly);
4. `samples.py` (`read_groups`, `decode_row`): a tar sample back into rows and tensors;
5. `loaders.py` (`build_shard_bundle`, `build_stream_loader`): the factories that read
   `DataConfig`, called by `data/loaders.py` when `data.shards` is set.
"""

from contrastkit.data.shards.loaders import StreamLoader, build_shard_bundle, build_stream_loader
from contrastkit.data.shards.splits import ShardBatches, ShardSplit, extracted_split, resolve_shards
from contrastkit.data.shards.writer import INDEX_NAME, write_shards

__all__ = [
    "INDEX_NAME",
    "ShardBatches",
    "ShardSplit",
    "StreamLoader",
    "build_shard_bundle",
    "build_stream_loader",
    "extracted_split",
    "resolve_shards",
    "write_shards",
]
