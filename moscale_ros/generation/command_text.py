"""What a command's wording says beyond the motion itself: its parts, their durations and repeats.

``parse_command("walk forward, then turn left, then wave for three seconds")`` gives three
:class:`CommandPart` s; each carries the text the model is given (duration and count phrases
removed), the duration the text asks for (``None``: not said) and how many times it is repeated.

* Parts are separated by ``then``, ``and then``, ``after that``, ``afterwards``, ``next``,
  ``finally``, commas and semicolons; a leading ``first`` is dropped.
* Durations: ``for N seconds`` / ``for N minutes`` (digits or number words, ``a``/``one``/``half a``),
  ``briefly`` / ``for a moment`` (:data:`BRIEF_SECONDS`), ``for a long time`` / ``for a while``
  (:data:`LONG`: the longest the caller allows).
* Counts: ``N times``, ``once``, ``twice``, ``thrice`` repeat the part.

Pure text processing: no model, no ROS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moscale_common.errors import InputError

BRIEF_SECONDS = 2.0  # "briefly", "for a moment"
LONG = float("inf")  # "for a long time": the caller's longest duration
MAX_REPEATS = 5  # "N times" above this is refused
MAX_PARTS = 8  # parts of one command, repeats included

NUMBER_WORDS = {
    "a": 1.0, "an": 1.0, "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0,
    "seven": 7.0, "eight": 8.0, "nine": 9.0, "ten": 10.0, "eleven": 11.0, "twelve": 12.0, "fifteen": 15.0,
    "twenty": 20.0, "thirty": 30.0, "half a": 0.5, "half an": 0.5, "a couple of": 2.0, "a few": 3.0,
}  # fmt: skip
_NUMBER = r"(?P<number>\d+(?:\.\d+)?|" + "|".join(sorted((re.escape(w) for w in NUMBER_WORDS), key=len, reverse=True))
_NUMBER += r")"
_DURATION = re.compile(
    r"\b(?:for\s+)?(?:about\s+|around\s+|roughly\s+)?" + _NUMBER + r"[\s-]+(?P<unit>seconds?|secs?|s|minutes?|mins?)\b",
    re.IGNORECASE,
)
_BRIEF = re.compile(r"\b(?:briefly|for\s+a\s+(?:moment|second|split\s+second)|quickly\s+once)\b", re.IGNORECASE)
_LONG = re.compile(r"\b(?:for\s+a\s+(?:long\s+time|long\s+while|while)|for\s+long)\b", re.IGNORECASE)
_COUNT_WORDS = {"once": 1, "twice": 2, "thrice": 3}
_COUNT = re.compile(r"\b(?:" + _NUMBER + r"\s+times|(?P<word>once|twice|thrice))\b", re.IGNORECASE)
_SEPARATORS = re.compile(
    r"\s*(?:[,;]\s*(?:and\s+)?(?:then|after\s+that|afterwards|next|finally)?|"
    r"\b(?:and\s+then|and\s+after\s+that|after\s+that|afterwards|then|finally)\b)\s*",
    re.IGNORECASE,
)
_LEADING_FIRST = re.compile(r"^\s*(?:first(?:ly)?|to\s+start|start\s+by)\b[\s,]*", re.IGNORECASE)


@dataclass(frozen=True)
class CommandPart:
    """One part of a command: ``text`` for the model, ``seconds`` said in the text (None: not
    said; :data:`LONG` for "a long time"), ``repeats`` (1: once), and the ``original`` wording."""

    text: str
    original: str
    seconds: float | None = None
    repeats: int = 1


def _number(token: str) -> float:
    token = " ".join(token.lower().split())
    return float(token) if token[0].isdigit() else NUMBER_WORDS[token]


def _tidy(text: str) -> str:
    """Collapse whitespace and drop dangling punctuation and connectives left by a removal."""
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;!?])", r"\1", text)
    text = re.sub(r"^(?:and|then|,|;)\s+", "", text, flags=re.IGNORECASE)
    return text.strip(" ,;.")


def parse_part(original: str) -> CommandPart:
    """The duration and count phrases of one part, taken out of its text. InputError when nothing
    but them is left, or a count is 0 or above :data:`MAX_REPEATS`."""
    text, seconds, repeats = original, None, 1
    match = _DURATION.search(text)
    if match:
        value = _number(match.group("number"))
        seconds = value * (60.0 if match.group("unit").lower().startswith("m") else 1.0)
        text = text[: match.start()] + " " + text[match.end() :]
    elif _LONG.search(text):
        seconds = LONG
        text = _LONG.sub(" ", text)
    elif _BRIEF.search(text):
        seconds = BRIEF_SECONDS
        text = _BRIEF.sub(" ", text)
    count = _COUNT.search(text)
    if count:
        word = count.group("word")
        repeats = _COUNT_WORDS[word.lower()] if word else int(round(_number(count.group("number"))))
        text = text[: count.start()] + " " + text[count.end() :]
        if not 1 <= repeats <= MAX_REPEATS:
            raise InputError(f"{original.strip()!r}: {repeats} repetitions; between 1 and {MAX_REPEATS} are allowed")
    text = _tidy(text)
    if not text:
        raise InputError(f"{original.strip()!r} says how long or how often but not what to do")
    if seconds is not None and seconds <= 0:
        raise InputError(f"{original.strip()!r}: a duration must be positive")
    return CommandPart(text, _tidy(original), seconds, repeats)


def split_parts(text: str) -> list[str]:
    """The parts of a command in order (one part when there is no separator)."""
    stripped = _LEADING_FIRST.sub("", text.strip(), count=1)
    parts = [_tidy(p) for p in _SEPARATORS.split(stripped)]
    return [p for p in parts if p]


def parse_command(text: str) -> list[CommandPart]:
    """Every part of ``text`` with its duration and count (see the module docstring). InputError
    when a part is only a duration or count, or when the parts, repeats included, exceed :data:`MAX_PARTS`."""
    pieces = split_parts(text)
    if not pieces:
        raise InputError(f"command {text[:60]!r} has nothing to do")
    parts = [parse_part(piece) for piece in pieces]
    total = sum(p.repeats for p in parts)
    if total > MAX_PARTS:
        raise InputError(f"command {text[:60]!r} has {total} parts (repeats included); at most {MAX_PARTS} are allowed")
    return parts
