"""The one set of checks on a request's text, duration and seed, under limits the caller passes in.

The generator checks with its model's limits (:attr:`MotionGenerator.limits`); the pipeline checks a
node command with the node's policy limits, tightened to the model's (:meth:`RequestLimits.within`).
A duration must lie in ``[min_seconds, max_seconds]``; a value within ``1e-6`` (relative) of a bound
is that bound (a float32 9.8 arrives as 9.80000019).
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from dataclasses import dataclass

from moscale_common.errors import InputError

TOLERANCE = 1e-6
ECHO_CHARS = 40  # characters of a text that any message echoes
# Bidirectional embeddings, overrides and isolates (they reorder how text is shown, "Trojan source")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TAG_CHARACTERS = range(0xE0000, 0xE0080)  # invisible ASCII look-alikes (U+E0000..U+E007F)
INVISIBLE_LETTERS = frozenset("\u3164\uffa0\u115f\u1160\u2800")  # blank, though categorised Lo / So


@dataclass(frozen=True)
class RequestLimits:
    """What a request may ask for: at most ``max_text_chars`` characters of text and a duration in
    ``[min_seconds, max_seconds]``."""

    max_text_chars: int
    min_seconds: float
    max_seconds: float

    def within(self, other: RequestLimits) -> RequestLimits:
        """The tighter of both limits."""
        return RequestLimits(
            min(self.max_text_chars, other.max_text_chars),
            max(self.min_seconds, other.min_seconds),
            min(self.max_seconds, other.max_seconds),
        )


def _unprintable(text: str) -> tuple[int, str] | None:
    """Index and character of the first control character (Unicode category Cc other than tab, line
    feed, carriage return), lone surrogate (Cs) or unassigned code point (Cn) in ``text``, if any."""
    for index, char in enumerate(text):
        if char in "\t\n\r":
            continue
        if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
            return index, char
    return None


def echo_text(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` as every message shows it: quoted, capped at ``limit`` characters (then ``...`` and
    the full length), with control, format, private-use, unassigned and separator characters other
    than a plain space escaped as ``\\uXXXX`` (so nothing invisible or reordering reaches a log)."""
    shown = []
    for char in text[:limit]:
        category = unicodedata.category(char)
        if char != " " and (category[0] in "CZ" or char in BIDI_CONTROLS or char in INVISIBLE_LETTERS):
            shown.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        elif char in "'\\":
            shown.append("\\" + char)
        else:
            shown.append(char)
    tail = f"...' ({len(text)} characters)" if len(text) > limit else "'"
    return "'" + "".join(shown) + tail


def check_visible(text: str) -> None:
    """InputError unless ``text`` has a visible letter or digit (Unicode categories L*, N*; the
    Hangul fillers U+3164, U+FFA0, U+115F, U+1160 and the Braille blank U+2800 do not count), or if
    it holds a bidirectional override/isolate or a tag character (which hide what a log shows)."""
    for index, char in enumerate(text):
        if char in BIDI_CONTROLS or ord(char) in TAG_CHARACTERS:
            raise InputError(
                f"command text has a bidirectional-override or tag character U+{ord(char):04X} at index {index} "
                f"({echo_text(text)})"
            )
    if not any(unicodedata.category(c)[0] in "LN" and c not in INVISIBLE_LETTERS for c in text):
        raise InputError(f"command text has no visible letter or digit ({echo_text(text)})")


def validate_text(text: object, limits: RequestLimits) -> str:
    """``text`` without leading and trailing whitespace. InputError unless it is a string, not empty
    after stripping, at most ``limits.max_text_chars`` characters, without control characters (tab
    and newlines aside), surrogates or unassigned code points, and passes :func:`check_visible`."""
    if not isinstance(text, str):
        raise InputError(f"command text must be a string, got {type(text).__name__}")
    limit = limits.max_text_chars
    if len(text) > 4 * limit + 1024:  # far too long: refuse before scanning it
        raise InputError(
            f"command text is {len(text)} characters long, more than max_text_length={limit} ({echo_text(text)})"
        )
    stripped = text.strip()
    if not stripped:
        raise InputError(f"command text is empty or only whitespace ({echo_text(text)})")
    if len(stripped) > limit:
        raise InputError(
            f"command text is {len(stripped)} characters long, more than max_text_length={limit} "
            f"({echo_text(stripped)})"
        )
    bad = _unprintable(stripped)
    if bad is not None:
        index, char = bad
        raise InputError(
            f"command text has a control or unassigned character U+{ord(char):04X} at index {index} "
            f"({echo_text(stripped)})"
        )
    check_visible(stripped)
    return stripped


def validate_seconds(seconds: object, limits: RequestLimits) -> float:
    """``seconds`` as a float (snapped onto a bound within the tolerance); InputError unless it is a
    finite positive number within the limits."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise InputError(f"duration must be a number of seconds, got {type(seconds).__name__} {seconds!r}"[:120])
    value = float(seconds)
    if not math.isfinite(value):
        raise InputError(f"duration must be a finite number of seconds, got {seconds!r}")
    if value <= 0:
        raise InputError(f"duration must be positive, got {seconds!r} s")
    for bound in (limits.min_seconds, limits.max_seconds):
        if abs(value - bound) <= TOLERANCE * bound:
            value = bound
    if not limits.min_seconds <= value <= limits.max_seconds:
        how = "too short" if value < limits.min_seconds else "too long"
        raise InputError(
            f"duration {value:g} s is outside the supported range "
            f"[{limits.min_seconds:g}, {limits.max_seconds:g}] s ({how})"
        )
    return value


def validate_seed(seed: object) -> int | None:
    """``seed`` as an int (None stays None: a random seed); InputError unless a non-negative integer."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"seed must be an integer, got {type(seed).__name__} {seed!r}"[:120])
    if seed < 0:
        raise InputError(f"seed must be >= 0 (or None for a random one), got {seed}")
    return int(seed)
