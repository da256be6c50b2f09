"""contrastkit: train, evaluate and diagnose contrastive multimodal models."""

__version__ = "0.1.0"
