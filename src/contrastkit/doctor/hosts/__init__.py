"""The doctor for runs trained by other tools: a plain PyTorch loop, Hugging Face
`Trainer` (and sentence-transformers' trainer), Lightning.

`host_config` describes a foreign run as a `Config` for the rules. `attach(model,
optimizer, ...)` returns a `Watcher` that feeds the engine's own monitors from torch
hooks and `observe` calls and, on `close`, writes the same files as a contrastkit run.
The per-host callbacks (`hf`, `sentence_transformers`, `lightning`) are thin adapters
over one watcher; each imports its library lazily.
"""

from contrastkit.doctor.hosts.host_config import host_config

__all__ = ["host_config"]
