"""Small configs and data shared by several test files (each returns a fresh copy)."""

from __future__ import annotations

import copy
from typing import Any

_MINIMAL: dict[str, Any] = {
    "data": {"manifest": "m.jsonl"},
    "model": {
        "towers": {
            "image": {"streams": {"image": {"type": "cnn"}}},
            "text": {"streams": {"text": {"type": "builtin_text"}}},
        }
    },
}

_DOC_CODE_MODEL: dict[str, Any] = {
    "embed_dim": 16,
    "tokenizer": {"vocab_size": 200, "max_length": 16},
    "towers": {
        "doc": {"streams": {"text": {"type": "builtin_text", "width": 16}}},
        "code": {"streams": {"text_code": {"type": "builtin_text", "width": 16}}},
    },
}

# Docstring -> code pairs easy enough that zero-shot MiniLM ranks every one first.
DOC_CODE_PAIRS = [
    ("Return the sum of two numbers.", "def add(a, b):\n    return a + b"),
    ("Reverse a string.", "def reverse(s):\n    return s[::-1]"),
    ("Count the words in a text.", "def count_words(t):\n    return len(t.split())"),
    ("Sort the list in place.", "def sort_in_place(xs):\n    xs.sort()"),
]


def minimal_config() -> dict[str, Any]:
    """The smallest valid config dict: an image tower and a text tower, defaults elsewhere."""
    return copy.deepcopy(_MINIMAL)


def tiny_doc_code_model() -> dict[str, Any]:
    """`model:` of a 16-wide builtin doc <-> code pair of towers (pydoc-code columns)."""
    return copy.deepcopy(_DOC_CODE_MODEL)
