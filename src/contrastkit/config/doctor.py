"""The `doctor` section: data checks before training and monitors during it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contrastkit.config.base import Section


class DoctorConfig(Section):
    """The doctor's data checks before training and its monitors during it."""

    enabled: bool = Field(
        True, description="run the doctor (monitors, findings.json, training_curves.png)"
    )
    check_data: bool = Field(True, description="run the data checks before training")
    fail_on: Literal["never", "warning", "error"] = Field(
        "never",
        description="stop before training when a data finding reaches this severity: never, warning or error",
    )
    every: int = Field(25, ge=1, description="steps between signal measurements")
    probe_size: int = Field(64, ge=2, description="fixed probe rows for drift")
    interference: bool = Field(
        True, description="measure the cosine between objectives' gradients on shared parameters"
    )
    near_duplicate_cosine: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="texts closer than this (embedding cosine) under different groups are reported as false negatives",
    )
