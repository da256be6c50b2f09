"""Shared test helpers: toy models, engines and run scripts, imported as `helpers.<module>`.

pytest puts `tests/` on `sys.path` (`pythonpath = ["tests"]` in pyproject.toml), so a test
imports `from helpers.train_toys import toy_engine` from any folder. A helper run as a
subprocess script by path needs the same: the tests launch it with `PYTHONPATH=tests`.
"""
