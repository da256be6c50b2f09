"""Rules: turn recorded signals into findings with numbers, a cause and a config fix.

`diagnose(signals, cfg)` reads the flat records the monitors wrote (see monitors/ and
docs/doctor.md for the keys). Each rule compares the start and end of a series (mean
of the first / last fifth of its records, so one noisy step does not decide) against a
named threshold in `thresholds.py`.

A package rather than one module so that each concept stays small: the thresholds, the
shared context and helpers, one module per family of rules (optimisation, temperature,
objectives, representation) and `diagnose`, which runs them and orders the findings.
"""

from contrastkit.doctor.rules.diagnosis import diagnose

__all__ = ["diagnose"]
