"""Weak-model answers: how a small or overloaded model gets a stage's JSON wrong.

Pure functions of the good answer, so every branch of leadpipe's output checks (contract
validation, JSON extraction, repair, fallback, truncation) can be hit on purpose and repeatably.
The kind a request gets is drawn by :func:`request_draw` from a hash of the seed and the request,
not from a shared RNG: the same request gets the same answer whatever the order of the threads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Kinds that rewrite the answer text; "slow" and "unauthorized" are handled by the server.
TEXT_FAULTS = ("wrong_keys", "prose", "truncated", "missing_fields")
PROSE_BEFORE = "Sure! Here is the JSON you asked for:\n\n```json\n"
PROSE_AFTER = "\n```\n\nLet me know if you would like me to change anything."


@dataclass(frozen=True, slots=True)
class Faulty:
    """The answer as the weak model gives it."""

    text: str
    truncated: bool = False
    completion_tokens: int | None = None  # billed tokens when they differ from the text's


def request_draw(seed: int | None, model: str, system: str, user: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the request's model and messages."""
    key = "\x1f".join((str(seed), model, system, user)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def apply(kind: str, text: str, max_tokens: int | None) -> Faulty:
    """Rewrite a good answer ``text`` (JSON, usually) the way fault ``kind`` says.

    Args:
        kind: One of :data:`TEXT_FAULTS`; any other kind leaves the text as it is.
        text: The good answer.
        max_tokens: The request's token cap; a truncated answer stops there (billed in full).
    """
    if kind == "prose":
        return Faulty(PROSE_BEFORE + text + PROSE_AFTER)
    if kind == "truncated":
        return _truncate(text, max_tokens)
    data = _object(text)
    if data is None or not data:
        return Faulty(text)
    if kind == "wrong_keys":
        return Faulty(json.dumps({_wrong_key(k): v for k, v in data.items()}, indent=2))
    if kind == "missing_fields":
        kept = {k: v for i, (k, v) in enumerate(data.items()) if i % 2 == 1}
        return Faulty(json.dumps(kept, indent=2))
    return Faulty(text)


def _truncate(text: str, max_tokens: int | None) -> Faulty:
    # A rambling weak model runs into the cap: cut at the cap when the answer is longer, else
    # halfway (as if the cap were lower), never at a point where the JSON is still whole.
    cap_chars = max_tokens * 4 if max_tokens else len(text) // 2
    cut = text[: min(cap_chars, max(1, len(text) // 2))]
    return Faulty(cut, truncated=True, completion_tokens=max_tokens)


def _object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _wrong_key(key: str) -> str:
    # camelCase plus a "Value" suffix: plausible to a human, never the snake_case key asked for.
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest) + "Value"
