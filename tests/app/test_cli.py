"""CLI behaviour that needs no training: version, config show, user errors."""

from pathlib import Path

from contrastkit import __version__
from contrastkit.app.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits.yaml"


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_shows_version_as_a_flag(capsys, monkeypatch):
    """`--version` takes no value, so the help must not print a type beside it."""
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["--help"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "--version" in x)
    assert "<bool>" not in line
    assert "print the version" in line


def test_config_show_resolves_defaults_and_overrides(capsys):
    assert main(["config", "show", str(EXAMPLE), "-o", "train.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out
    assert "max_logit_scale: 100.0" in out  # a default the file does not set


def test_user_error_is_one_paragraph_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("batch_size: 128", "batch_size: -4"))
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.batch_size" in err
    assert "Traceback" not in err


def test_debug_shows_traceback(tmp_path, capsys):
    assert main(["--debug", "config", "show", str(tmp_path / "missing.yaml")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_command_is_usage_error(capsys):
    assert main(["fly"]) != 0
