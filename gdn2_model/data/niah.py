"""RULER-style needle-in-a-haystack tasks in real haystacks (Hsieh et al., 2024, "RULER").

Needles read "One of the special magic {numbers|uuids} for {key} is: {value}." and the question
asks for the value of one key. Tasks, as in RULER:

- `s-niah-1`: one needle, repeated filler sentences as haystack, number values;
- `s-niah-2`: one needle in real documents, number values;
- `s-niah-3`: one needle in real documents, UUID values;
- `mk-niah-1`: four needles with different keys in real documents, one key asked;
- `mv-niah`: four values for the same key, any one is a correct extractive answer (all are gold);
- `mq-niah`: four keys, four questions (sample.meta["queries"]), scored one question at a time.

Haystacks come as retrieved-like pieces of ~1k tokens so the layout is the reader's own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from gdn2_model.data.corpus import Document
from gdn2_model.data.sample import CHARS_PER_TOKEN, AnswerSpan, Sample, chunk_text
from gdn2_model.prompt import ContextPiece

TASKS = ("s-niah-1", "s-niah-2", "s-niah-3", "mk-niah-1", "mv-niah", "mq-niah")
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
KEY_WORDS = [
    "amber",
    "anchor",
    "apple",
    "arrow",
    "aspen",
    "atlas",
    "autumn",
    "badger",
    "bamboo",
    "banjo",
    "barley",
    "beacon",
    "birch",
    "bison",
    "blossom",
    "bramble",
    "breeze",
    "bronze",
    "cactus",
    "canyon",
    "cedar",
    "cherry",
    "cinder",
    "clover",
    "cobalt",
    "comet",
    "copper",
    "coral",
    "cosmos",
    "cricket",
    "crystal",
    "dahlia",
    "delta",
    "desert",
    "dolphin",
    "dragon",
    "eagle",
    "ember",
    "falcon",
    "fern",
    "fjord",
    "forest",
    "fossil",
    "galaxy",
    "garnet",
    "glacier",
    "granite",
    "harbor",
    "hazel",
    "heron",
    "hickory",
    "horizon",
    "iris",
    "island",
    "ivory",
    "jasmine",
    "jungle",
    "juniper",
    "kestrel",
    "lagoon",
    "lantern",
    "lemon",
    "lilac",
    "lotus",
    "lynx",
    "maple",
    "marble",
    "meadow",
    "meteor",
    "mango",
    "mint",
    "monsoon",
    "mosaic",
    "nectar",
    "nebula",
    "nutmeg",
    "oak",
    "oasis",
    "olive",
    "onyx",
    "orchid",
    "otter",
    "panther",
    "pebble",
    "pepper",
    "pine",
    "plum",
    "prairie",
    "quartz",
    "quill",
    "raven",
    "reef",
    "river",
    "ruby",
    "saffron",
    "sage",
    "sapphire",
    "sequoia",
    "shadow",
    "sierra",
    "silver",
    "spruce",
    "summit",
    "sunset",
    "tango",
    "thistle",
    "thunder",
    "tiger",
    "topaz",
    "tulip",
    "tundra",
    "valley",
    "velvet",
    "violet",
    "walnut",
    "willow",
    "winter",
    "yarrow",
    "zephyr",
    "zinc",
]


def _value(rng: random.Random, kind: str) -> str:
    if kind == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return str(rng.randint(1_000_000, 9_999_999))


def _needle(key: str, value: str, kind: str) -> tuple[str, int]:
    """Needle sentence and the offset of the value inside it."""
    head = f"One of the special magic {'uuids' if kind == 'uuid' else 'numbers'} for {key} is: "
    return f"{head}{value}. ", len(head)


class NeedleTaskMaker:
    """Builds NIAH samples over the documents of one split."""

    def __init__(self, docs: Sequence[Document], chunk_chars: int = 4000) -> None:
        self.chunk_chars = chunk_chars
        self._pieces = [
            ContextPiece(d.text[s:e], f"{d.title}")
            for d in docs
            for s, e in chunk_text(d.text, chunk_chars)
            if e - s > chunk_chars // 2
        ]
        if not self._pieces:
            raise ValueError("NeedleTaskMaker needs documents with text")

    def _haystack(self, rng: random.Random, task: str, target_tokens: int) -> list[str]:
        n_chars = int(target_tokens * CHARS_PER_TOKEN)
        n = max(1, round(n_chars / self.chunk_chars))
        # short contexts get one piece cut to size (at a space) instead of a whole 1k-token piece
        size = min(self.chunk_chars, n_chars)
        if task == "s-niah-1":
            return [NOISE * max(1, size // len(NOISE)) for _ in range(n)]
        out = []
        for _ in range(n):
            text = self._pieces[rng.randrange(len(self._pieces))].text
            if len(text) > size:
                cut = text.rfind(" ", 0, size)
                text = text[: cut if cut > size // 2 else size]
            out.append(text)
        return out

    def sample(self, rng: random.Random, task: str, target_tokens: int, depth: float | None = None) -> Sample:
        """One sample of `task` at about `target_tokens`; `depth` in [0, 1] places the (first) needle."""
        if task not in TASKS:
            raise ValueError(f"unknown NIAH task {task!r}; expected one of {TASKS}")
        kind = "uuid" if task == "s-niah-3" else "number"
        n_needles = 1 if task.startswith("s-") else 4
        keys = rng.sample(KEY_WORDS, n_needles)
        if task == "mv-niah":
            keys = [keys[0]] * n_needles
        values = [_value(rng, kind) for _ in range(n_needles)]
        hay = self._haystack(rng, task, target_tokens)
        depths = [rng.random() if depth is None else depth] + [rng.random() for _ in range(n_needles - 1)]
        # needles go in at sentence boundaries (". ") near their depth; several in one piece are fine
        inserts: dict[int, list[tuple[float, str, str]]] = {}
        for key, val, d in zip(keys, values, depths, strict=True):
            pi = min(len(hay) - 1, int(d * len(hay)))
            inserts.setdefault(pi, []).append((d * len(hay) - pi, key, val))
        pieces: list[ContextPiece] = []
        spans: dict[tuple[str, str], AnswerSpan] = {}
        for pi, text in enumerate(hay):
            for frac, key, val in sorted(inserts.get(pi, []), reverse=True):
                at = int(frac * len(text))
                dot = text.find(". ", at)
                at = dot + 2 if 0 <= dot < at + 400 else at
                needle, voff = _needle(key, val, kind)
                text = text[:at] + needle + text[at:]
                # shift spans already placed later in this piece
                for k2, sp in list(spans.items()):
                    if sp.piece == pi and sp.char_start >= at:
                        spans[k2] = AnswerSpan(
                            pi, sp.char_start + len(needle), sp.char_end + len(needle), sp.text
                        )
                spans[(key, val)] = AnswerSpan(pi, at + voff, at + voff + len(val), val)
            pieces.append(ContextPiece(text, f"haystack part {pi + 1}"))
        noun = "uuid" if kind == "uuid" else "number"
        ask = f"What is the special magic {noun} for {{}} mentioned in the provided text?"
        if task == "mv-niah":
            q = f"What are all the special magic numbers for {keys[0]} mentioned in the provided text?"
            answers = [spans[(keys[0], v)] for v in values]
            meta = {}
        else:
            q = ask.format(keys[0])
            answers = [spans[(keys[0], values[0])]]
            meta = {"queries": [(ask.format(k), [spans[(k, v)]]) for k, v in zip(keys, values, strict=True)]}
        return Sample(q, pieces, answers, task, "niah", f"niah:{task}", meta)
