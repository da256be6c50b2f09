"""Data doctor: match-group health checks run before training.

The commonest silent failure in contrastive data is grouping: when five captions of one
image each get their own `group`, the other four captions become *negatives* of the
image, the loss pushes apart what should be together and training "collapses" for no
visible reason. These checks find that (identical media or normalised text under
different groups), split leakage, rows skipped by `on_error: skip`, missing labels, and
batches with too few positives. Files are hashed once each; everything else is dict
look-ups, so ~10k rows take well under a second plus the file reads.

A package rather than one module so that each concept stays small: the shared limits,
the content keys rows are compared by, one module per family of checks (duplicates,
groups, leakage, missing rows) and `check_data`, which runs them all.
"""

from contrastkit.doctor.data_checks.runner import check_data

__all__ = ["check_data"]
