"""The epoch plan of a sharded stream: who reads which shard, in what order, from where.

Everything here is a pure function of the shard counts in the index and of (seed, epoch,
ranks, workers), so every process computes the same plan without talking to the others,
and a resumed run computes the same position from the checkpoint's step alone.

* **Streams.** With R ranks and W loader workers (W = 1 without workers) there are
  S = R x W streams; stream `rank * W + worker` reads shards `order[s::S]` of the
  epoch's permutation `order` of the shards (seeded by (seed, epoch)). The streams'
  shard sets are disjoint and cover every shard, so no sample is read twice in an epoch.
* **Shuffle buffer.** A stream reads `buffer_shards` shards at a time (a *window*) and
  permutes their units together (seeded by (seed, epoch, stream, window)). The buffer is
  bounded (buffer_shards x shard size) and, because its edges are shard edges, a
  position is exact: windows done (shards done) plus an offset into the current window.
* **Units.** A unit is a row (`sampler: random`) or a whole group (`sampler: groups`,
  K groups x M members per batch); a stream's batch takes the next `units_per_batch`.
* **Order across workers.** A PyTorch DataLoader returns the workers' batches round
  robin (worker 0, 1, ..., skipping a worker once it is exhausted); `interleave` is that
  order, which maps a rank's batch number to (worker, that worker's batch number).
* **Equal steps on every rank and epoch.** DDP steps together and the LR schedule counts
  steps per epoch, so every rank delivers `epoch_steps` batches in every epoch, a bound
  that holds for any permutation; a rank with more data leaves the rest of its last
  shards unread this epoch (a later permutation deals them elsewhere), as `drop_last`
  leaves a partial batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StreamLayout:
    """How one epoch is cut: seed, epoch, ranks x workers, window and batch sizes."""

    seed: int
    epoch: int
    world_size: int
    workers: int
    buffer_shards: int
    units_per_batch: int
    drop_last: bool = True

    @property
    def streams(self) -> int:
        """Parallel readers across all ranks: one per loader worker (or the main process) per rank."""
        return self.world_size * max(self.workers, 1)


def shard_order(n_shards: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's permutation of shard indices (the same in every process)."""
    return np.random.default_rng([seed, epoch, 0x5A4D]).permutation(n_shards)


def stream_shards(n_shards: int, layout: StreamLayout, stream: int) -> list[int]:
    """Shard indices read by `stream` this epoch, in reading order."""
    return shard_order(n_shards, layout.seed, layout.epoch)[stream :: layout.streams].tolist()


def windows(shards: list[int], buffer_shards: int) -> list[list[int]]:
    """Consecutive groups of `buffer_shards` shards: what the shuffle buffer holds at once."""
    return [shards[i : i + buffer_shards] for i in range(0, len(shards), buffer_shards)]


def stream_batches(units: list[int], layout: StreamLayout, stream: int) -> int:
    """Batches stream `stream` yields in a full epoch (`units[i]`: units of shard i)."""
    total = sum(units[s] for s in stream_shards(len(units), layout, stream))
    full, rest = divmod(total, layout.units_per_batch)
    return full + (1 if rest and not layout.drop_last else 0)


def worker_batches(units: list[int], layout: StreamLayout, rank: int) -> list[int]:
    """Batches each worker of `rank` yields in a full epoch."""
    w = max(layout.workers, 1)
    return [stream_batches(units, layout, rank * w + k) for k in range(w)]


def epoch_steps(units: list[int], layout: StreamLayout) -> int:
    """Batches every rank delivers in *every* epoch (see the module docstring).

    One stream: its exact count (a permutation does not change a total). Several: a
    bound that holds whatever the epoch's permutation, so the schedule's steps per epoch
    are fixed: a rank reads at least W x floor(n / S) shards, so at least the sum U of
    that many smallest shards, and W streams that drop a partial batch each deliver at
    least floor(U / B) - (W - 1) batches. With equal shards and S dividing n, this is
    all but the partial batches.
    """
    if layout.streams == 1:
        return stream_batches(units, layout, 0)
    w = max(layout.workers, 1)
    fewest = w * (len(units) // layout.streams)
    smallest = sum(sorted(units)[:fewest])
    return max(smallest // layout.units_per_batch - (w - 1), 0)


def interleave(counts: list[int]) -> list[tuple[int, int]]:
    """The DataLoader's order of (worker, batch number) for workers with `counts` batches."""
    return [
        (w, k) for k in range(max(counts, default=0)) for w in range(len(counts)) if k < counts[w]
    ]


def consumed_per_worker(counts: list[int], start_batch: int) -> list[int]:
    """Batches each worker already delivered when the rank has delivered `start_batch`."""
    done = [0] * len(counts)
    for w, _ in interleave(counts)[:start_batch]:
        done[w] += 1
    return done


def next_worker(counts: list[int], start_batch: int) -> int:
    """The worker that delivers the rank's batch `start_batch` (0 past the end).

    Rotating the workers so that this one is asked first makes a resumed DataLoader's
    round robin continue the interrupted one exactly (exhausted workers are skipped in
    both)."""
    order = interleave(counts)
    return order[start_batch][0] if start_batch < len(order) else 0


def locate(units: list[int], shards: list[int], buffer_shards: int, skip: int) -> tuple[int, int]:
    """(windows fully consumed, offset into the next window) after `skip` units."""
    for i, window in enumerate(windows(shards, buffer_shards)):
        size = sum(units[s] for s in window)
        if skip < size:
            return i, skip
        skip -= size
    return len(windows(shards, buffer_shards)), skip


def position(units: list[int], layout: StreamLayout, rank: int, start_batch: int) -> dict:
    """Where each of `rank`'s streams stands after the rank delivered `start_batch` batches.

    Returns `{"epoch", "batch", "streams": [{"stream", "shards_done", "offset"}]}`: the
    shards whose every unit was consumed and the units consumed of the current window.
    """
    counts = worker_batches(units, layout, rank)
    done = consumed_per_worker(counts, start_batch)
    streams = []
    for k, batches in enumerate(done):
        stream = rank * max(layout.workers, 1) + k
        shards = stream_shards(len(units), layout, stream)
        window, offset = locate(
            units, shards, layout.buffer_shards, batches * layout.units_per_batch
        )
        streams.append(
            {
                "stream": stream,
                "shards_done": min(window * layout.buffer_shards, len(shards)),
                "offset": offset,
            }
        )
    return {"epoch": layout.epoch, "batch": start_batch, "streams": streams}
