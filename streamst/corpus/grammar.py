"""A zh<->en grammar with the word-order differences that make simultaneous translation hard.

A :class:`Sentence` is a tuple of :class:`Phrase` in Chinese order plus the order the same
phrases take in English. Phrases translate word for word inside themselves (``三 本 旧 书`` ->
``three old books``); everything that moves, moves as whole phrases. Structures:

* ``svo``: subject, verb, object, no reordering at all (``我 买了 三 本 书``);
* ``svo-tp``: time and place adverbials before the verb in Mandarin, after the object in
  English (``我 昨天 在 学校 买了 一 本 书`` -> ``I bought a book at the school yesterday``);
* ``ba``: 把 moves the object before the verb (``我 把 那 本 书 卖了`` -> ``I sold that book``);
* ``bei``: 被 puts the agent before the verb (``那 本 书 被 老师 卖了`` -> ``that book was sold by the teacher``);
* ``rc-object`` / ``rc-subject``: a relative clause before its head noun in Mandarin, after
  it in English, so the head noun must be waited for (``我 认识 [昨天 在 医院 买了 三 本 书 的] 老师``
  -> ``I met the teacher that bought three books at the hospital yesterday``);
* ``two-clause``: two of the above joined by a connective (long utterances).

:meth:`Sentence.reorder_distance` is the longest reorder in source words: the largest
``last(B) - first(A)`` over phrase pairs A, B with A before B in the source and B before A
in the target (punctuation is not a word). A monotone sentence has distance 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from streamst.corpus import lexicon

# reorder-distance buckets (in source words) every quality figure is split by
BUCKETS = (("0", 0, 0), ("1-2", 1, 2), ("3-5", 3, 5), ("6+", 6, 10**6))


def bucket_of(d: int) -> str:
    """The bucket name of a reorder distance ``d``."""
    return next(name for name, lo, hi in BUCKETS if lo <= d <= hi)


PUNCT = frozenset({",", "，"})
STRUCTURES = ("svo", "svo-tp", "ba", "bei", "rc-object", "rc-subject", "two-clause")
WEIGHTS = (0.10, 0.22, 0.10, 0.10, 0.16, 0.10, 0.22)


@dataclass(frozen=True)
class Phrase:
    zh: tuple[str, ...]  # Chinese words (joined without spaces)
    en: tuple[str, ...]  # English words

    def words(self, lang: str) -> tuple[str, ...]:
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True)
class Sentence:
    structure: str
    phrases: tuple[Phrase, ...]  # Chinese order
    en_order: tuple[int, ...]  # indices into ``phrases`` in English order

    def ordered(self, lang: str) -> list[Phrase]:
        return list(self.phrases) if lang == "zh" else [self.phrases[i] for i in self.en_order]

    def words(self, lang: str) -> list[str]:
        """Words of ``lang`` in order, punctuation excluded."""
        return [w for p in self.ordered(lang) for w in p.words(lang) if w not in PUNCT]

    def text(self, lang: str) -> str:
        words = [w for p in self.ordered(lang) for w in p.words(lang)]
        if lang == "zh":
            return "".join(words)
        out = ""
        for w in words:
            out += w if (w == "," or not out) else " " + w
        return out[:1].upper() + out[1:]

    def reorder_distance(self, src: str) -> int:
        """Longest reorder in source words (see the module docstring)."""
        tgt = "en" if src == "zh" else "zh"
        src_order = list(range(len(self.phrases))) if src == "zh" else list(self.en_order)
        tgt_order = list(self.en_order) if src == "zh" else list(range(len(self.phrases)))
        spans: dict[int, tuple[int, int]] = {}
        pos = 0
        for i in src_order:
            n = sum(1 for w in self.phrases[i].words(src) if w not in PUNCT)
            if n:
                spans[i] = (pos, pos + n - 1)
            pos += n
        rank = {i: r for r, i in enumerate(j for j in tgt_order if any(
            w not in PUNCT for w in self.phrases[j].words(tgt)))}
        moved = [i for i in src_order if i in spans and i in rank]
        best = 0
        for a_at, a in enumerate(moved):
            for b in moved[a_at + 1:]:
                if rank[b] < rank[a]:
                    best = max(best, spans[b][1] - spans[a][0])
        return best


# -- the lexicon, parsed ---------------------------------------------------------------------

def _rows(table: str) -> list[list[str]]:
    return [line.split("|") for line in table.strip().splitlines()]


@cache
def tables() -> dict[str, list[list[str]]]:
    return {name: _rows(getattr(lexicon, name)) for name in
            ("PRONOUNS", "PEOPLE", "THINGS", "ADJECTIVES", "VERBS", "TIMES", "PLACES", "NUMERALS")}


def _zh(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _en(text: str) -> tuple[str, ...]:
    return tuple(text.split())


class _Builder:
    """Random constituents; each returns (phrases in Chinese order, the same in English order)."""

    def __init__(self, rng: random.Random, rows: int | None = None) -> None:
        self.rng = rng
        self.t = {k: v[:rows] if rows else v for k, v in tables().items()}

    def pick(self, name: str) -> list[str]:
        return self.rng.choice(self.t[name])

    # noun phrases are single phrases (monotone inside)
    def subject(self) -> Phrase:
        r = self.rng.random()
        if r < 0.35:
            zh, en = self.pick("PRONOUNS")
            return Phrase(_zh(zh), _en(en))
        zh, en = self.pick("PEOPLE")
        if r < 0.6:
            owner = self.rng.choice([("我的", "my"), ("他的", "his"), ("她的", "her"), ("我们的", "our")])
            return Phrase((owner[0], zh), (owner[1], *_en(en)))
        return Phrase((zh,), ("the", *_en(en)))

    def thing(self, definite: bool) -> Phrase:
        zh, cls, one, many = self.pick("THINGS")
        adj = self.pick("ADJECTIVES") if self.rng.random() < 0.4 else None
        azh, aen = ((adj[0],), (adj[1],)) if adj else ((), ())
        if definite:
            dzh, den = self.rng.choice([("这", "this"), ("那", "that")])
            return Phrase((dzh, cls, *azh, zh), (den, *aen, *_en(one)))
        num_zh, num_en = self.pick("NUMERALS")
        if num_zh == "一":
            first = (aen or _en(one))[0]
            art = "an" if first[0] in "aeiou" else "a"
            return Phrase((num_zh, cls, *azh, zh), (art, *aen, *_en(one)))
        return Phrase((num_zh, cls, *azh, zh), (num_en, *aen, *_en(many)))

    def time(self) -> Phrase:
        zh, en = self.pick("TIMES")
        return Phrase(_zh(zh), _en(en))

    def place(self) -> Phrase:
        zh, prep, en = self.pick("PLACES")
        return Phrase(("在", zh), (*_en(prep), *_en(en)))

    def verb(self, le: bool = True) -> tuple[Phrase, list[str]]:
        row = self.pick("VERBS")
        zh = row[0] if (not le or row[0].endswith("了")) else row[0] + "了"
        return Phrase((zh,), _en(row[1])), row

    # clauses: (zh order, en order) of phrase objects
    def svo(self, tp: bool) -> tuple[list[Phrase], list[Phrase]]:
        s, (v, _), o = self.subject(), self.verb(), self.thing(definite=self.rng.random() < 0.3)
        t = self.time() if tp and self.rng.random() < 0.8 else None
        p = self.place() if tp and (t is None or self.rng.random() < 0.7) else None
        zh = [s, *(x for x in (t, p) if x), v, o]
        en = [s, v, o, *(x for x in (p, t) if x)]
        return zh, en

    def ba(self) -> tuple[list[Phrase], list[Phrase]]:
        s, (v, _), o = self.subject(), self.verb(), self.thing(definite=True)
        t = self.time() if self.rng.random() < 0.5 else None
        b = Phrase(("把",), ())
        zh = [s, *(x for x in (t,) if x), b, o, v]
        en = [s, v, o, *(x for x in (t,) if x)]
        return zh, en

    def bei(self) -> tuple[list[Phrase], list[Phrase]]:
        o, s, (_, row) = self.thing(definite=True), self.subject(), self.verb()
        t = self.time() if self.rng.random() < 0.5 else None
        by = Phrase(("被",), ("by",))
        v = Phrase((row[0] if row[0].endswith("了") else row[0] + "了",), ("was", *_en(row[2])))
        zh = [o, *(x for x in (t,) if x), by, s, v]
        en = [o, v, by, s, *(x for x in (t,) if x)]
        return zh, en

    def relative(self) -> tuple[list[Phrase], list[Phrase]]:
        """A head noun with a relative clause: [RC 的] N -> the N that RC."""
        t = self.time() if self.rng.random() < 0.7 else None
        p = self.place() if self.rng.random() < 0.6 else None
        de = Phrase(("的",), ("that",))
        if self.rng.random() < 0.55:  # subject gap: the teacher that bought three books ...
            zh, en = self.pick("PEOPLE")
            head = Phrase((zh,), ("the", *_en(en)))
            v, _ = self.verb()
            o = self.thing(definite=False)
            zh_seq = [*(x for x in (t, p) if x), v, o, de, head]
            en_seq = [head, de, v, o, *(x for x in (p, t) if x)]
        else:  # object gap: the books that my brother bought ...
            row = self.pick("THINGS")
            adj = self.pick("ADJECTIVES") if self.rng.random() < 0.4 else None
            head = Phrase((*((adj[0],) if adj else ()), row[0]), ("the", *((adj[1],) if adj else ()), *_en(row[2])))
            s = self.subject()
            v, _ = self.verb(le=False)
            zh_seq = [s, *(x for x in (t, p) if x), v, de, head]
            en_seq = [head, de, s, v, *(x for x in (p, t) if x)]
        return zh_seq, en_seq

    def rc_object(self) -> tuple[list[Phrase], list[Phrase]]:
        s, (v, _) = self.subject(), self.verb()
        rz, re_ = self.relative()
        return [s, v, *rz], [s, v, *re_]

    def rc_subject(self) -> tuple[list[Phrase], list[Phrase]]:
        rz, re_ = self.relative()
        v, _ = self.verb()
        o = self.thing(definite=self.rng.random() < 0.3)
        return [*rz, v, o], [*re_, v, o]

    def clause(self) -> tuple[list[Phrase], list[Phrase]]:
        kind = self.rng.choices(("svo", "svo-tp", "ba", "bei", "rc-object"), (0.15, 0.35, 0.15, 0.15, 0.2))[0]
        return self.make(kind)

    def two_clause(self) -> tuple[list[Phrase], list[Phrase]]:
        (z1, e1), (z2, e2) = self.clause(), self.clause()
        kind = self.rng.randrange(4)
        if kind == 0:
            c = Phrase(("，", "然后"), (",", "and", "then"))
            return [*z1, c, *z2], [*e1, c, *e2]
        if kind == 1:
            c = Phrase(("，", "可是"), (",", "but"))
            return [*z1, c, *z2], [*e1, c, *e2]
        first = Phrase(("因为",), ("because",)) if kind == 2 else Phrase(("虽然",), ("although",))
        c = Phrase(("，", "所以"), (",",)) if kind == 2 else Phrase(("，", "但是"), (",",))
        return [first, *z1, c, *z2], [first, *e1, c, *e2]

    def make(self, structure: str) -> tuple[list[Phrase], list[Phrase]]:
        return {
            "svo": lambda: self.svo(tp=False), "svo-tp": lambda: self.svo(tp=True), "ba": self.ba,
            "bei": self.bei, "rc-object": self.rc_object, "rc-subject": self.rc_subject,
            "two-clause": self.two_clause,
        }[structure]()


def sentence(structure: str, rng: random.Random, rows: int | None = None) -> Sentence:
    """One random sentence of ``structure`` (one of :data:`STRUCTURES`); ``rows``: use only the
    first ``rows`` entries of each lexicon table (a smaller vocabulary)."""
    zh, en = _Builder(rng, rows).make(structure)
    index = {id(p): i for i, p in enumerate(zh)}
    return Sentence(structure, tuple(zh), tuple(index[id(p)] for p in en))


def random_sentence(rng: random.Random, rows: int | None = None) -> Sentence:
    return sentence(rng.choices(STRUCTURES, WEIGHTS)[0], rng, rows)


def vocabulary(lang: str) -> set[str]:
    """Every word the grammar can produce in ``lang`` (punctuation excluded)."""
    t = tables()
    out: set[str] = set()
    if lang == "zh":
        for name in ("PRONOUNS", "PEOPLE", "ADJECTIVES", "NUMERALS"):
            out |= {r[0] for r in t[name]}
        out |= {w for r in t["TIMES"] for w in _zh(r[0])}
        out |= {r[0] for r in t["PLACES"]} | {r[0] for r in t["THINGS"]} | {r[1] for r in t["THINGS"]}
        out |= {r[0] for r in t["VERBS"]} | {r[0] if r[0].endswith("了") else r[0] + "了" for r in t["VERBS"]}
        out |= {"在", "把", "被", "的", "这", "那", "我的", "他的", "她的", "我们的", "然后", "可是", "因为", "所以", "虽然", "但是"}
    else:
        for name in ("PRONOUNS", "PEOPLE", "ADJECTIVES", "NUMERALS", "TIMES"):
            out |= {w for r in t[name] for w in _en(r[1])}
        out |= {w for r in t["THINGS"] for w in _en(r[2]) + _en(r[3])}
        out |= {w for r in t["PLACES"] for w in _en(r[1]) + _en(r[2])}
        out |= {w for r in t["VERBS"] for w in _en(r[1]) + _en(r[2])}
        out |= {"the", "a", "an", "this", "that", "my", "his", "her", "our", "by", "was", "and", "then", "but",
                "because", "although"}
    return out
