"""The base of every config section (unknown keys are errors, floats are finite), and the
validation of a nested item whose errors keep their place in the whole config."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on set."""

    # allow_inf_nan=False: no float setting means anything at inf or NaN (an lr of inf
    # trains on NaN and fails far from the cause), so every float key rejects them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _validated(where: tuple, model: type[BaseModel], item: Any) -> Any:
    """`model.model_validate(item)`, errors re-raised at `where` + their own location."""
    try:
        return model.model_validate(item)
    except ValidationError as err:
        details = [
            InitErrorDetails(
                type=e["type"], loc=(*where, *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
            )
            for e in err.errors()
        ]
        raise ValidationError.from_exception_data(err.title, details) from None
