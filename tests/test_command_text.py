"""Parts, durations and counts read from a command's text (moscale_ros/generation/command_text.py)."""

from __future__ import annotations

import pytest

from moscale_common.errors import InputError
from moscale_ros.generation.command_text import BRIEF_SECONDS, LONG, MAX_REPEATS, parse_command, split_parts


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("walk forward, then turn left, then wave", ["walk forward", "turn left", "wave"]),
        ("walk forward and then turn left and then wave", ["walk forward", "turn left", "wave"]),
        ("First bow, after that wave goodbye", ["bow", "wave goodbye"]),
        ("run; walk back; bow", ["run", "walk back", "bow"]),
        ("bow then wave", ["bow", "wave"]),
        ("walk and turn left", ["walk and turn left"]),  # a plain "and" joins one motion
        ("wave the right hand", ["wave the right hand"]),
    ],
)
def test_a_command_splits_into_its_parts(text, parts):
    assert split_parts(text) == parts


def test_durations_and_counts_are_read_and_removed_from_the_text():
    (wave,) = parse_command("wave for three seconds")
    assert (wave.text, wave.seconds, wave.repeats) == ("wave", 3.0, 1)
    (bow,) = parse_command("bow for 2.5 s")
    assert (bow.text, bow.seconds) == ("bow", 2.5)
    (brief,) = parse_command("briefly raise your left hand")
    assert (brief.text, brief.seconds) == ("raise your left hand", BRIEF_SECONDS)
    (long,) = parse_command("walk forward for a long time")
    assert (long.text, long.seconds) == ("walk forward", LONG)
    (minute,) = parse_command("run for half a minute")
    assert (minute.text, minute.seconds) == ("run", 30.0)
    (twice,) = parse_command("wave twice")
    assert (twice.text, twice.repeats, twice.seconds) == ("wave", 2, None)
    first, second = parse_command("bow three times, then wave for two seconds")
    assert (first.text, first.repeats, second.text, second.seconds) == ("bow", 3, "wave", 2.0)
    assert second.original == "wave for two seconds"


def test_a_plain_command_is_left_alone():
    (part,) = parse_command("a person walks forward happily")
    assert (part.text, part.seconds, part.repeats) == ("a person walks forward happily", None, 1)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("for three seconds", "not what to do"),
        (f"wave {MAX_REPEATS + 1} times", "repetitions"),
        ("wave 0 times", "repetitions"),
        ("wave, bow, run, walk, kick, punch, dance, call, bow", "at most"),
        (", ,", "nothing to do"),
    ],
)
def test_commands_that_cannot_be_read_are_refused_with_the_reason(text, needle):
    with pytest.raises(InputError, match=needle):
        parse_command(text)
