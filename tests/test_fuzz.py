"""Fuzzing the input side: every manifest (JSONL, CSV, Parquet) and every config file or
override either loads or raises contrastkit's own `ContrastkitError`, never anything
else (no UnicodeDecodeError, KeyError, pyarrow or numpy error, RecursionError...).

Inputs mix random bytes with near-valid files: real column names with values of the
wrong type, huge and non-finite numbers, lone surrogates, bytes that are not UTF-8,
stray delimiters and quotes, and paths to media files that are broken in known ways.
The runs are bounded (`max_examples`, derandomized) so the module takes a few seconds;
set CONTRASTKIT_FUZZ_EXAMPLES=2000 to search longer on a random seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contrastkit.config import DataConfig, config_from_dict, load_config
from contrastkit.data import build_datasets
from contrastkit.errors import ContrastkitError
from helpers.configs import minimal_config

LONG_RUN = int(os.environ.get("CONTRASTKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=LONG_RUN or 60,
    deadline=None,
    derandomize=not LONG_RUN,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COLUMNS = ["id", "group", "split", "text", "text_code", "image", "video", "sequence",
           "features", "label", "attributes", "note"]  # fmt: skip
MEDIA = ["good.npy", "nan.npy", "words.npy", "empty.npy", "big.npy", "seq.npy", "feat.npy",
         "broken.png", "frames", "missing.npy", "../outside.npy", "/etc/hostname", "~/x.npy",
         "a\x00b.npy", "x" * 300]  # fmt: skip
BASE = minimal_config()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    np.save(root / "good.npy", np.full((4, 4), 0.5, np.float32))
    np.save(root / "nan.npy", np.full((4, 4), np.nan, np.float32))
    np.save(root / "words.npy", np.array(["a", "b"]))
    np.save(root / "empty.npy", np.zeros((0, 3), np.float32))
    np.save(root / "big.npy", np.full((4, 4), 255.0, np.float32))
    np.save(root / "seq.npy", np.ones((3, 2, 2), np.float32))
    np.save(root / "feat.npy", np.ones(6, np.float32))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "frames").mkdir()
    np.save(root / "frames" / "0.npy", np.ones((4, 4), np.uint8))
    return root


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["train", "Val", " test", "1", "1.0", "01", "\ud800", "a,b", "a;b", '"']),
    st.sampled_from(MEDIA),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
records = st.dictionaries(st.sampled_from(COLUMNS) | st.text(max_size=6), values, max_size=7)
junk = st.binary(max_size=200)


def _load(path: Path, on_error: str, root: Path) -> None:
    """build_datasets end to end: parse, validate media, split; errors must be ours."""
    cfg = DataConfig(manifest=str(path), root=str(root), on_error=on_error)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float-range and read-time warnings are expected
        try:
            bundle = build_datasets(cfg, require_train=False)
        except ContrastkitError:
            return
    for dataset in bundle.splits.values():  # reading rows must be safe too
        for i in range(min(len(dataset), 3)):
            with contextlib.suppress(ContrastkitError):
                dataset[i]


def _jsonl_line(record: dict) -> bytes:
    # json.dumps escapes a lone surrogate as "\ud800", which is exactly the JSON case.
    return json.dumps(record, allow_nan=True).encode() + b"\n"


@FUZZ
@given(
    lines=st.lists(st.one_of(records.map(_jsonl_line), junk), min_size=1, max_size=5),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_jsonl_manifest_loads_or_raises_contrastkit_error(
    media_dir: Path, lines: list[bytes], on_error: str
) -> None:
    path = media_dir / "m.jsonl"
    path.write_bytes(b"".join(lines))
    _load(path, on_error, media_dir)


def _csv_cell(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, allow_nan=True)


csv_text = st.lists(
    st.lists(
        st.one_of(scalars.map(_csv_cell), st.sampled_from(['"a, b"', '"', "", ";", "\r", "\n"])),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(
    header=st.lists(st.sampled_from(COLUMNS) | st.text(max_size=4), min_size=1, max_size=6),
    body=csv_text,
    noise=junk,
    delimiter=st.sampled_from([",", ";", "\t"]),
    suffix=st.sampled_from([".csv", ".tsv"]),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_csv_manifest_loads_or_raises_contrastkit_error(
    media_dir: Path,
    header: list[str],
    body: list[list[str]],
    noise: bytes,
    delimiter: str,
    suffix: str,
    on_error: str,
) -> None:
    lines = [delimiter.join(header), *(delimiter.join(row) for row in body)]
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass") + noise
    path = media_dir / f"m{suffix}"
    path.write_bytes(data)
    _load(path, on_error, media_dir)


@FUZZ
@given(rows=st.lists(records, min_size=1, max_size=4), junk_file=st.booleans(), noise=junk)
def test_parquet_manifest_loads_or_raises_contrastkit_error(
    media_dir: Path, rows: list[dict], junk_file: bool, noise: bytes
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = media_dir / "m.parquet"
    if junk_file:
        path.write_bytes(b"PAR1" + noise)
    else:
        try:  # arrow rejects mixed-type columns and lone surrogates: nothing to fuzz then
            pq.write_table(pa.Table.from_pylist(rows), path)
        except (pa.ArrowException, UnicodeEncodeError, OverflowError, TypeError, ValueError):
            path.write_bytes(noise)
    _load(path, "skip", media_dir)
    _load(path, "raise", media_dir)


@FUZZ
@given(
    root=st.one_of(
        st.text(max_size=20),
        st.sampled_from(["~nosuchuser", "a\x00b", "x" * 5000, "/", "..", "~", "good.npy"]),
    ),
    manifest=st.sampled_from(["m.jsonl", "~nosuchuser/m.jsonl", "missing.jsonl", "x" * 5000]),
    allow_outside_root=st.booleans(),
)
def test_data_root_and_manifest_paths_load_or_raise_contrastkit_error(
    media_dir: Path, root: str, manifest: str, allow_outside_root: bool
) -> None:
    (media_dir / "m.jsonl").write_text('{"id": "a", "text": "t", "image": "good.npy"}\n')
    path = str(media_dir / manifest) if manifest in ("m.jsonl", "missing.jsonl") else manifest
    cfg = DataConfig(manifest=path, root=root, allow_outside_root=allow_outside_root)
    with contextlib.suppress(ContrastkitError):
        build_datasets(cfg)


# --------------------------------------------------------------------------- config

config_values = st.recursive(
    st.one_of(
        scalars,
        st.floats(min_value=1e300, max_value=1e308),
        st.sampled_from(["auto", "tpu", "cuda:0", ".inf", "-1", "[1, 2]", "{a: 1}"]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = ["data.batch_size", "data.manifest", "data.on_error", "data.sampler", "data.root",
        "data.train_split", "data.image.size", "model.embed_dim", "model.towers",
        "model.towers.text.streams.text.type", "loss.objectives", "train.lr", "train.betas",
        "train.device", "train.phases", "train.lr_scale", "eval.splits", "eval.ks",
        "doctor.every", "name", "x.y"]  # fmt: skip


def _set(data: dict, key: str, value: object) -> None:
    *parents, last = key.split(".")
    node = data
    for k in parents:
        node = node.setdefault(k, {}) if isinstance(node.get(k), dict | None) else {}
    node[last] = value


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), config_values), max_size=4))
def test_config_values_load_or_raise_contrastkit_error(changes: list) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes:
        _set(data, key, value)
    with contextlib.suppress(ContrastkitError):
        config_from_dict(data)


@FUZZ
@given(
    overrides=st.lists(
        st.tuples(st.sampled_from([*KEYS, "", "a..b", "0"]), st.text(max_size=15)).map("=".join)
        | st.text(max_size=20),
        max_size=3,
    )
)
def test_config_overrides_load_or_raise_contrastkit_error(overrides: list[str]) -> None:
    with contextlib.suppress(ContrastkitError):
        config_from_dict(BASE, overrides=overrides)


@FUZZ
@given(
    body=st.one_of(
        junk,
        config_values.map(lambda v: yaml.safe_dump({**BASE, "train": {"lr": v}}).encode()),
        st.text(max_size=80).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    ),
    prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"!!python/object:os.system\n"]),
)
def test_config_file_loads_or_raises_contrastkit_error(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, prefix: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(prefix + body)
    with contextlib.suppress(ContrastkitError):
        load_config(path)


# --------------------------------------------------------------------------- the CLI
# Random argument vectors for every subcommand against a finished run: each exits 0 or 2
# without a traceback, and a command that fails leaves the run folder byte-identical.

CLI_CONFIG = """
name: fuzz
data: {manifest: m.jsonl, batch_size: 2}
model:
  embed_dim: 8
  tokenizer: {type: builtin, vocab_size: 200, max_length: 12}
  towers:
    doc: {streams: {text: {type: builtin_text, width: 8, depth: 1, heads: 1}}}
    code: {streams: {text_code: {type: builtin_text, width: 8, depth: 1, heads: 1}}}
loss: {objectives: [{name: c, type: clip, towers: [doc, code]}]}
train: {epochs: 1, progress: none, device: cpu, loggers: {tensorboard: false}}
eval: {ks: [1, 2]}
doctor: {enabled: false}
"""
CLI_EXAMPLES = LONG_RUN or 40
CLI_CASES: list[int] = []  # one entry per generated case, for the count in the report

# Placeholders, filled per example: the run, one of its checkpoints, a second run, paths.
VALUES = ["{RUN}", "{CKPT}", "{OTHER}", "{CONFIG}", "{MANIFEST}", "{SPACE}", "{BADSPACE}",
          "{OUT}", "{DIR}", "{FILE}", "{MISSING}/x.html", "/nonexistent", "", "0", "-1", "3",
          "99999", "nan", "best", "last", "auto", "atuo", "val", "VAL", "test", "nosuch",
          "doc", "code", "r1", "🐱 ｒｅｄ", "a=b", "--", "-k", "sqlite:////no/such/s.db"]  # fmt: skip
OVERRIDES = ["data.batch_size=500", "eval.ks=[0]", "train.lr=abc", "model.embed_dim=3",
             "nosuch.key=1", "loss.objectives.0.towers.0.x=1", "eval.ks=[1,2]", "x"]  # fmt: skip
COMMANDS: dict[str, tuple[list[str], list[str]]] = {  # prefix, options taking a value
    "train": (["train", "{CONFIG}", "--run-dir", "{RUN}"], ["--resume", "-o"]),
    "eval": (["eval", "{RUN}"], ["--split", "--checkpoint", "-o"]),
    "search": (["search", "{RUN}"], ["-k", "--split", "--query-id", "--gallery", "--examples",
                                    "--checkpoint", "--seed"]),
    "embed": (["embed", "{RUN}"], ["--out", "--split", "--checkpoint"]),
    "export": (["export", "{RUN}"], ["--out", "--checkpoint"]),
    "report": (["report", "{RUN}"], ["--out", "--split", "--checkpoint", "--seed"]),
    "compare": (["compare", "{RUN}"], ["--out", "--study", "--run-root"]),
    "doctor run": (["doctor", "run", "{RUN}"], []),
    "doctor data": (["doctor", "data", "{CONFIG}"], ["-o"]),
    "config show": (["config", "show", "{CONFIG}"], ["-o"]),
    "shard": (["shard", "{MANIFEST}"], ["--out", "--shard-size", "--on-error"]),
    "sweep": (["sweep", "{CONFIG}"], ["--space", "--trials", "--storage", "--run-root"]),
}  # fmt: skip


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    prefix, options = COMMANDS[draw(st.sampled_from(sorted(COMMANDS)))]
    args = list(prefix)
    for _ in range(draw(st.integers(0, 3))):
        if options and draw(st.booleans()):
            flag = draw(st.sampled_from(options))
            args += [flag, draw(st.sampled_from(OVERRIDES if flag == "-o" else VALUES))]
        else:
            args.append(draw(st.sampled_from(VALUES)))  # a stray positional
    if args[0] == "sweep" and "--trials" not in args:
        args += ["--trials", draw(st.sampled_from(["0", "-1"]))]  # never a real training
    return args


def _folder_hash(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def cli_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contrastkit.app.cli import main

    root = tmp_path_factory.mktemp("cli")
    splits = ["train"] * 6 + ["val"] * 3 + ["test"] * 3
    rows = [{"id": f"r{i}", "split": s, "text": f"word{i} alpha", "text_code": f"code{i} beta"}
            for i, s in enumerate(splits)]  # fmt: skip
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "c.yaml").write_text(CLI_CONFIG)
    (root / "space.yaml").write_text("train.lr: {type: float, low: 0.001, high: 0.01}\n")
    (root / "bad_space.yaml").write_text("train.lr: {type: float, low: abc, high: 0.1}\n")
    assert main(["train", str(root / "c.yaml"), "--run-dir", str(root / "base")]) == 0
    return root


@pytest.mark.slow
@settings(FUZZ, max_examples=CLI_EXAMPLES)
@given(args=argv())
def test_cli_exits_0_or_2_and_a_failure_leaves_the_run_as_it_was(
    cli_root: Path, tmp_path_factory: pytest.TempPathFactory, args: list[str]
) -> None:
    import shutil

    from contrastkit.app.cli import main

    work = tmp_path_factory.mktemp("case")
    run = Path(shutil.copytree(cli_root / "base", work / "run"))
    other = Path(shutil.copytree(cli_root / "base", work / "other"))
    (work / "dir").mkdir()
    (work / "file").write_text("x")
    fill = {"{RUN}": run, "{CKPT}": next((run / "checkpoints").glob("step_*")),
            "{OTHER}": other, "{CONFIG}": cli_root / "c.yaml", "{MANIFEST}": cli_root / "m.jsonl",
            "{SPACE}": cli_root / "space.yaml", "{BADSPACE}": cli_root / "bad_space.yaml",
            "{OUT}": work / "out.html", "{DIR}": work / "dir", "{FILE}": work / "file",
            "{MISSING}": work / "missing"}  # fmt: skip
    concrete = [fill.get(a, a) for a in args]
    concrete = [str(a).replace("{MISSING}", str(work / "missing")) for a in concrete]
    before = _folder_hash(run)
    cwd = Path.cwd()
    os.chdir(work)  # default outputs (compare.html, runs/) land in the case's folder
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(concrete)
    finally:
        os.chdir(cwd)
    CLI_CASES.append(code)
    assert code in (0, 2), f"exit {code} for {args}"
    if code != 0:
        assert _folder_hash(run) == before, f"{args} failed and changed the run"
