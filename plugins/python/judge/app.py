"""Example judge plugin in Python (componentize-py).

Flags empty, truncated, refused, repetitive and (when JSON was asked for)
invalid-JSON answers. The same rules as the Rust judge in plugins/rust/judge,
checked by the same tests. It does not call a model.
"""

import json
import re

from wit_world import exports
from wit_world.exports.judging import Verdict
from wit_world.imports import host

REFUSALS = [
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to",
    "i am unable to",
    "as an ai language model",
    "i won't be able to help",
]


def is_refusal(text: str) -> bool:
    """Whether the first 200 characters contain a refusal phrase."""
    head = text[:200].lower().replace("\u2019", "'")
    extra = host.config_get("extra_refusals") or ""
    phrases = REFUSALS + [p.strip().lower() for p in extra.split("|") if p.strip()]
    return any(p in head for p in phrases)


def is_json(text: str) -> bool:
    """Whether the text (without a Markdown code fence around it) is JSON."""
    body = text
    if body.startswith("```"):
        body = body[3:]
        body = body.split("\n", 1)[1] if "\n" in body else ""
        stripped = body.rstrip()
        if stripped.endswith("```"):
            body = stripped[:-3]
    try:
        json.loads(body.strip())
        return True
    except ValueError:
        return False


def is_repetitive(text: str) -> bool:
    """A 3+ word sentence occurring 3+ times, or 30+ words < 25% distinct."""
    lower = text.lower()
    counts: dict[str, int] = {}
    for piece in re.split(r"[.!?\n]", lower):
        words = piece.split()
        if len(words) < 3:
            continue
        key = " ".join(words)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] >= 3:
            return True
    words = lower.split()
    if len(words) >= 30:
        return len(set(words)) < 0.25 * len(words)
    return False


class Judging(exports.Judging):
    def judge(self, request, response) -> Verdict:
        text = response.content.strip()
        if not text and not response.has_tool_calls:
            return Verdict(0.0, False, "empty")
        if response.finish_reason == "length":
            return Verdict(0.3, False, "truncated")
        if response.finish_reason == "content_filter":
            return Verdict(0.0, False, "content filtered")
        if is_refusal(text):
            return Verdict(0.1, False, "refusal")
        if request.wants_json and text and not is_json(text):
            return Verdict(0.2, False, "invalid json")
        if is_repetitive(text):
            return Verdict(0.2, False, "repetition")
        return Verdict(1.0, True, "ok")
