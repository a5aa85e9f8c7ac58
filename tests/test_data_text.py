"""Descriptions from content/style labels: coverage, determinism, held-out phrasing kept apart."""

from __future__ import annotations

import pytest

from moscale_common.errors import DataError
from moscale_ros.data.text import (
    CONTENT_PHRASES,
    STYLE_PHRASES,
    base_form,
    describe_clip,
    style_concept,
    template_counts,
    third_person,
)

# Every label of the Bandai-Namco file names (PLATFORM.md "Motion data" and the dataset READMEs).
BANDAI_CONTENTS = (
    "walk walk-back walk-left walk-right run dash bow bye byebye guide respond call punch kick slash dance-short "
    "dance-long walk-turn-left walk-turn-right wave-both-hands wave-left-hand wave-right-hand raise-up-both-hands "
    "raise-up-left-hand raise-up-right-hand"
).split()
BANDAI_STYLES = (
    "normal happy sad angry proud not-confident masculinity feminine childish old tired active musical giant "
    "chimpira elderly exhausted masculine youthful"
).split()


def test_every_bandai_label_has_several_paraphrases():
    for content in BANDAI_CONTENTS:
        phrases = CONTENT_PHRASES[content]
        assert len(phrases.train) >= 3 and len(phrases.heldout) >= 1, content
    for style in BANDAI_STYLES:
        phrases = STYLE_PHRASES[style_concept(style)]
        assert len(phrases.adverbs.train) >= 4 and len(phrases.subjects.train) >= 3, style
        assert phrases.adverbs.heldout and phrases.subjects.heldout, style
    counts = template_counts()
    assert counts["content_train"] >= 100 and counts["frames_heldout"] >= 2


def test_training_and_heldout_phrasings_are_disjoint():
    for content, phrases in CONTENT_PHRASES.items():
        assert not set(phrases.train) & set(phrases.heldout), content
    for style, phrases in STYLE_PHRASES.items():
        assert not set(phrases.adverbs.train) & set(phrases.adverbs.heldout), style
        assert not set(phrases.subjects.train) & set(phrases.subjects.heldout), style


def test_descriptions_are_deterministic_distinct_and_labelled():
    texts = describe_clip("dataset-2_wave-right-hand_elderly_007", "wave-right-hand", "elderly", 8)
    assert texts == describe_clip("dataset-2_wave-right-hand_elderly_007", "wave-right-hand", "elderly", 8)
    assert len(texts) == 8 and len(set(texts)) == 8
    assert all("right" in t.lower() for t in texts)
    assert all(t[0].isupper() and "{" not in t and "^" not in t and "  " not in t for t in texts)
    other = describe_clip("dataset-2_wave-right-hand_elderly_008", "wave-right-hand", "elderly", 8)
    assert other != texts
    heldout = describe_clip("dataset-2_wave-right-hand_elderly_007", "wave-right-hand", "elderly", 3, heldout=True)
    assert len(heldout) == 3 and not set(heldout) & set(texts)
    train_phrases = {base_form(p, "their") for p in CONTENT_PHRASES["wave-right-hand"].train}
    assert not any(p in h for h in heldout for p in train_phrases)


def test_commands_and_third_person_forms():
    assert third_person("raise {pos} hand and ^wave it") == "raises their hand and waves it"
    assert third_person("punch forward") == "punches forward" and third_person("carry on") == "carries on"
    texts = describe_clip("x", "raise-up-left-hand", "normal", 30)
    assert any(t.startswith(("Raise your left hand", "Please raise your left hand")) for t in texts)
    assert any("raises their left hand" in t for t in texts)


def test_unknown_labels_raise():
    with pytest.raises(DataError, match="no text templates for content 'moonwalk'"):
        describe_clip("x", "moonwalk", "normal")
    with pytest.raises(DataError, match="no text templates for style 'sleepy'"):
        describe_clip("x", "walk", "sleepy")
