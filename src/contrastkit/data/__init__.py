"""contrastkit.data: manifests -> validated datasets -> deterministic, resumable batches.

See docs/data.md for the manifest format and docs/architecture.md for the batch contract.
"""

from contrastkit.data.collate import collate, to_device
from contrastkit.data.dataset import ManifestDataset, validate_rows
from contrastkit.data.loaders import DatasetBundle, build_datasets, build_loader, resolve_manifest
from contrastkit.data.manifest import Row, SkippedRow, is_text_column, read_manifest
from contrastkit.data.media import ReadOptions
from contrastkit.data.samplers import GroupBatchSampler, RandomBatchSampler

__all__ = [
    "DatasetBundle",
    "GroupBatchSampler",
    "ManifestDataset",
    "RandomBatchSampler",
    "ReadOptions",
    "Row",
    "SkippedRow",
    "build_datasets",
    "build_loader",
    "collate",
    "to_device",
    "is_text_column",
    "read_manifest",
    "resolve_manifest",
    "validate_rows",
]
