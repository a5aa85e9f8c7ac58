"""Text descriptions of labelled clips from paraphrase templates.

A description joins a *content phrase* (what the body does, in base form: "wave {pos} right hand")
with a *style phrase* (how: an adverbial "happily", or a styled subject "a cheerful person") in a
*sentence frame* ("{Subject} {verb_s}{adv}.", or a command "{verb}{adv}."). Every content, style
and frame has training paraphrases and a disjoint held-out set; held-out descriptions are built
only from held-out parts, so they measure generalisation to unseen phrasing and are never trained on.

Descriptions of a clip are drawn deterministically from its name (same name, same texts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from moscale_common.errors import DataError


@dataclass(frozen=True)
class Phrases:
    train: tuple[str, ...]
    heldout: tuple[str, ...]


def _p(train: list[str], heldout: list[str]) -> Phrases:
    return Phrases(tuple(train), tuple(heldout))


# Content phrases in base (imperative) form; {pos} is "your" in commands and "their" otherwise; the
# first word and every word marked ^ are verbs (conjugated in third-person frames).
CONTENT_PHRASES: dict[str, Phrases] = {
    "walk": _p(
        [
            "walk forward",
            "walk straight ahead",
            "take a few steps forward",
            "walk ahead in a straight line",
            "stroll forward",
            "walk forwards",
            "go forward at a walking pace",
            "walk a few steps ahead",
        ],
        ["move ahead on foot", "pace forward"],
    ),
    "walk-back": _p(
        [
            "walk backward",
            "walk backwards",
            "take several steps back",
            "back up on foot",
            "walk in reverse",
            "step backward a few times",
        ],
        ["retreat by stepping backwards", "move back on foot without turning around"],
    ),
    "walk-left": _p(
        [
            "walk to the left",
            "walk forward and to the left",
            "walk diagonally to the left",
            "walk off to the left",
            "head left while walking",
        ],
        ["travel leftward on foot", "make their way to the left"],
    ),
    "walk-right": _p(
        [
            "walk to the right",
            "walk forward and to the right",
            "walk diagonally to the right",
            "walk off to the right",
            "head right while walking",
        ],
        ["travel rightward on foot", "make their way to the right"],
    ),
    "walk-turn-left": _p(
        [
            "walk and ^turn left",
            "walk forward while turning to the left",
            "walk in a curve to the left",
            "turn left while walking",
            "walk ahead and then ^turn left",
        ],
        ["curve leftward on foot", "follow a path that bends to the left"],
    ),
    "walk-turn-right": _p(
        [
            "walk and ^turn right",
            "walk forward while turning to the right",
            "walk in a curve to the right",
            "turn right while walking",
            "walk ahead and then ^turn right",
        ],
        ["curve rightward on foot", "follow a path that bends to the right"],
    ),
    "run": _p(
        [
            "run forward",
            "jog forward",
            "run straight ahead",
            "run ahead",
            "jog a few steps forward",
            "run in a straight line",
        ],
        ["move ahead at a running pace", "go for a short run"],
    ),
    "dash": _p(
        ["sprint forward", "dash forward", "run forward at full speed", "sprint ahead", "dash ahead"],
        ["rush ahead as fast as possible", "bolt forward"],
    ),
    "bow": _p(
        ["bow", "bow to someone", "bend forward at the waist in a bow", "take a bow", "bow down in greeting"],
        ["lean the upper body forward respectfully", "make a courteous bow"],
    ),
    "bye": _p(
        ["wave goodbye", "wave a hand to say goodbye", "say bye with a wave of the hand", "wave farewell"],
        ["signal farewell with one hand", "bid someone farewell with a hand"],
    ),
    "byebye": _p(
        [
            "wave goodbye with both hands",
            "say bye-bye waving both hands",
            "wave both arms to say goodbye",
            "wave farewell with both hands raised",
        ],
        ["bid farewell with both arms in the air", "see someone off by waving both hands"],
    ),
    "guide": _p(
        [
            "gesture to show the way",
            "point the way with an arm",
            "guide someone with a hand gesture",
            "show someone the direction with an open hand",
        ],
        ["indicate a direction with the arm", "usher someone along with a gesture"],
    ),
    "respond": _p(
        ["raise a hand to respond", "answer by putting a hand up", "respond to someone with a raised hand"],
        ["reply with a lifted arm"],
    ),
    "call": _p(["call out to someone", "shout to get someone's attention", "call someone over"], ["yell for somebody"]),
    "punch": _p(["throw a punch", "punch forward", "strike with a fist", "punch the air"], ["jab with a fist"]),
    "kick": _p(["kick", "kick forward with a leg", "do a kick", "kick the air"], ["strike out with a foot"]),
    "slash": _p(
        [
            "slash with a sword",
            "swing a sword",
            "make a slashing motion as if holding a blade",
            "cut with an imaginary sword",
        ],
        ["swing a blade through the air"],
    ),
    "dance-short": _p(
        ["dance", "do a short dance", "perform a quick dance", "dance to some music"], ["move to music for a moment"]
    ),
    "dance-long": _p(
        ["dance for a while", "perform a long dance", "dance for a long time", "do an extended dance"],
        ["perform a lengthy dance routine"],
    ),
    "wave-both-hands": _p(
        ["wave both hands", "wave with both hands", "raise both hands and ^wave them", "wave both arms"],
        ["greet by waving both arms overhead"],
    ),
    "wave-left-hand": _p(
        [
            "wave {pos} left hand",
            "wave with the left hand",
            "raise the left hand and ^wave it",
            "wave hello with {pos} left hand",
        ],
        ["greet someone using the left hand"],
    ),
    "wave-right-hand": _p(
        [
            "wave {pos} right hand",
            "wave with the right hand",
            "raise the right hand and ^wave it",
            "wave hello with {pos} right hand",
        ],
        ["greet someone using the right hand"],
    ),
    "raise-up-both-hands": _p(
        ["raise both hands", "lift both arms up", "put both hands up in the air", "raise both arms overhead"],
        ["hold both arms up high"],
    ),
    "raise-up-left-hand": _p(
        [
            "raise {pos} left hand",
            "lift the left arm up",
            "put {pos} left hand up in the air",
            "raise the left arm overhead",
        ],
        ["hold the left arm up high"],
    ),
    "raise-up-right-hand": _p(
        [
            "raise {pos} right hand",
            "lift the right arm up",
            "put {pos} right hand up in the air",
            "raise the right arm overhead",
        ],
        ["hold the right arm up high"],
    ),
}


@dataclass(frozen=True)
class StylePhrases:
    adverbs: Phrases  # "happily"
    subjects: Phrases  # "a happy person"


def _s(adv: list[str], adv_heldout: list[str], subj: list[str], subj_heldout: list[str]) -> StylePhrases:
    return StylePhrases(_p(adv, adv_heldout), _p(subj, subj_heldout))


_NEUTRAL_SUBJECTS = ["a person", "someone", "a man", "a woman", "the person", "a human"]
STYLE_PHRASES: dict[str, StylePhrases] = {
    "normal": _s(
        ["", "normally", "in a normal way", "casually", "in an ordinary manner"],
        ["plainly"],
        _NEUTRAL_SUBJECTS,
        ["an ordinary individual"],
    ),
    "happy": _s(
        ["happily", "cheerfully", "joyfully", "in a happy mood", "with joy"],
        ["in high spirits"],
        ["a happy person", "a cheerful person", "a joyful man", "a happy woman"],
        ["a delighted individual"],
    ),
    "sad": _s(
        ["sadly", "in a sad way", "gloomily", "sorrowfully", "in low spirits"],
        ["with a heavy heart"],
        ["a sad person", "an unhappy person", "a gloomy man", "a sad woman"],
        ["a heartbroken individual"],
    ),
    "angry": _s(
        ["angrily", "furiously", "in an angry way", "with anger", "irritably"],
        ["in a rage"],
        ["an angry person", "a furious man", "an irritated woman", "an angry man"],
        ["an enraged individual"],
    ),
    "proud": _s(
        ["proudly", "in a proud manner", "haughtily", "arrogantly", "with pride"],
        ["with their chin held high"],
        ["a proud person", "an arrogant man", "a proud woman", "a haughty person"],
        ["a self-important individual"],
    ),
    "not-confident": _s(
        ["timidly", "shyly", "without confidence", "hesitantly", "nervously"],
        ["insecurely"],
        ["a timid person", "a shy man", "an insecure woman", "a nervous person"],
        ["an unsure individual"],
    ),
    "masculine": _s(
        ["in a masculine way", "in a manly way", "in a macho manner", "with masculine body language"],
        ["like a tough guy"],
        ["a masculine person", "a macho man", "a manly person"],
        ["a rugged individual"],
    ),
    "feminine": _s(
        ["in a feminine way", "femininely", "with feminine body language", "daintily"],
        ["in a ladylike way"],
        ["a feminine person", "a graceful woman", "a feminine woman"],
        ["a ladylike individual"],
    ),
    "childish": _s(
        ["childishly", "like a child", "in a childish way", "like a little kid"],
        ["like a toddler"],
        ["a child", "a childish person", "a little kid", "a playful kid"],
        ["a small youngster"],
    ),
    "elderly": _s(
        ["like an old person", "like an elderly person", "in an elderly way", "stiffly like an old man"],
        ["like a senior citizen"],
        ["an old person", "an elderly person", "an old man", "an elderly woman"],
        ["an aged individual"],
    ),
    "tired": _s(
        ["tiredly", "wearily", "in an exhausted way", "with fatigue", "sluggishly"],
        ["drained of energy"],
        ["a tired person", "an exhausted man", "a weary woman", "a tired man"],
        ["a worn-out individual"],
    ),
    "active": _s(
        ["energetically", "actively", "vigorously", "in a lively way", "with lots of energy"],
        ["briskly"],
        ["an energetic person", "an active man", "a lively woman", "an energetic man"],
        ["a dynamic individual"],
    ),
    "musical": _s(
        ["rhythmically", "like a musical performer", "theatrically", "as if in a musical"],
        ["like a stage actor in a song"],
        ["a musical performer", "a theatrical dancer", "a showman"],
        ["a Broadway actor"],
    ),
    "giant": _s(
        ["like a giant", "heavily like a huge giant", "with big heavy movements", "in a lumbering way"],
        ["like an enormous ogre"],
        ["a giant", "a huge lumbering giant", "a big heavy creature"],
        ["a colossal being"],
    ),
    "chimpira": _s(
        ["like a thug", "with a thuggish swagger", "like a street punk", "in a delinquent way"],
        ["like a gangster"],
        ["a thug", "a street punk", "a delinquent", "a punk"],
        ["a hoodlum"],
    ),
    "youthful": _s(
        ["youthfully", "in a youthful way", "like a young person", "with youthful energy"],
        ["with the vigour of youth"],
        ["a young person", "a youthful man", "a young woman", "a teenager"],
        ["a youngster"],
    ),
}
# Dataset labels that name the same style concept.
STYLE_ALIASES = {"masculinity": "masculine", "old": "elderly", "exhausted": "tired"}

# Sentence frames: {subject}, {verb_s} (third person), {verb} (base form), {adv} (" happily" or "").
_FRAMES = Phrases(
    train=(
        "{subject} {verb_s}{adv}.",
        "{subject} {verb_s}{adv}",
        "{Verb}{adv}.",
        "{verb}{adv}",
        "{styled} {verb_s}.",
        "the person {verb_s}{adv}.",
        "{subject} is seen to {verb}{adv}.",
        "please {verb}{adv}.",
    ),
    heldout=(
        "in this clip, {subject} {verb_s}{adv}.",
        "we see {styled} who {verb_s}.",
        "could you {verb}{adv}?",
    ),
)
_COMMAND_FRAMES = {"{Verb}{adv}.", "{verb}{adv}", "please {verb}{adv}.", "could you {verb}{adv}?"}


def _conjugate(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def third_person(verb_phrase: str) -> str:
    """'raise {pos} hand and ^wave it' -> 'raises their hand and waves it' (the first word and words
    marked ^ conjugated, {pos} -> their)."""
    words = verb_phrase.split(" ")
    words = [_conjugate(w.lstrip("^")) if i == 0 or w.startswith("^") else w for i, w in enumerate(words)]
    return " ".join(words).replace("{pos}", "their")


def base_form(verb_phrase: str, pos: str) -> str:
    """The phrase as written, verb markers removed and {pos} filled."""
    return verb_phrase.replace("^", "").replace("{pos}", pos)


def style_concept(style: str) -> str:
    """Canonical style concept of a dataset label (e.g. 'old' -> 'elderly')."""
    return STYLE_ALIASES.get(style, style)


def _describe(content: str, style: str, rng: np.random.Generator, heldout: bool) -> str:
    if content not in CONTENT_PHRASES:
        raise DataError(f"no text templates for content {content!r}; known: {', '.join(sorted(CONTENT_PHRASES))}")
    concept = style_concept(style)
    if concept not in STYLE_PHRASES:
        raise DataError(f"no text templates for style {style!r}; known: {', '.join(sorted(STYLE_PHRASES))}")
    pick = (lambda p: p.heldout) if heldout else (lambda p: p.train)
    frame = str(rng.choice(pick(_FRAMES)))
    verb = str(rng.choice(pick(CONTENT_PHRASES[content])))
    style_phrases = STYLE_PHRASES[concept]
    adverb = str(rng.choice(pick(style_phrases.adverbs)))
    styled = str(rng.choice(pick(style_phrases.subjects)))
    subject = str(rng.choice(_NEUTRAL_SUBJECTS if not heldout else ("an individual", "somebody", "a performer")))
    command = frame in _COMMAND_FRAMES
    base = base_form(verb, "your" if command else "their")
    text = frame.format(
        subject=subject,
        styled=styled,
        verb_s=third_person(verb),
        verb=base,
        Verb=base[:1].upper() + base[1:],
        adv=f" {adverb}" if adverb else "",
    )
    return text[:1].upper() + text[1:]


def _rng_for(name: str, salt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def describe_clip(name: str, content: str, style: str, count: int = 8, heldout: bool = False) -> list[str]:
    """``count`` distinct descriptions (fewer if the templates run out) drawn deterministically from ``name``."""
    rng = _rng_for(name, "heldout" if heldout else "train")
    texts: list[str] = []
    for _ in range(count * 20):
        text = _describe(content, style, rng, heldout)
        if text not in texts:
            texts.append(text)
        if len(texts) == count:
            break
    return texts


def template_counts() -> dict[str, int]:
    """Number of paraphrases of each kind (training, held-out), for reports."""
    return {
        "content_train": sum(len(p.train) for p in CONTENT_PHRASES.values()),
        "content_heldout": sum(len(p.heldout) for p in CONTENT_PHRASES.values()),
        "style_train": sum(len(s.adverbs.train) + len(s.subjects.train) for s in STYLE_PHRASES.values()),
        "style_heldout": sum(len(s.adverbs.heldout) + len(s.subjects.heldout) for s in STYLE_PHRASES.values()),
        "frames_train": len(_FRAMES.train),
        "frames_heldout": len(_FRAMES.heldout),
    }
