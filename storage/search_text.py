"""The pure part of search: words of a query, the FTS5 and tsquery strings made from them,
how well a name matches (exact, prefix, other), typo tolerance, and the pagination cursor.

No database here, so all of it is unit-tested directly. The one rule that makes hostile
queries harmless: a query is reduced to words of letters and digits before anything is built
from it, so quotes, ``*``, ``NEAR``, ``-``, ``:`` or unbalanced parentheses never reach the
FTS5 or tsquery parser as syntax (an FTS5 ``NEAR`` or ``OR`` becomes a quoted word).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Sequence

# Letters and digits: the same split the FTS5 unicode61 tokenizer and PostgreSQL's parser make
# (the underscore separates words in both).
_WORD_RE = re.compile(r"[^\W_]+")
# Longest word kept (no name has longer ones; a 10 kB "word" would only cost time).
MAX_WORD_CHARS = 40

# Sort keys start with the match tier: how the query matches the hit's name.
TIER_EXACT, TIER_PREFIX, TIER_TEXT, TIER_FUZZY = 0, 1, 2, 3
# A typo match of a whole name ("factroio" for "Factorio") before one of a word in a longer name.
TIER_FUZZY_PART = 4


class InvalidCursor(ValueError):
    """A cursor that this search did not hand out (malformed, or for another type)."""


def words(text: str, max_words: int = 8) -> list[str]:
    """The lower-cased words of ``text``, at most ``max_words`` of them."""
    return [w[:MAX_WORD_CHARS] for w in _WORD_RE.findall(text.lower())[:max_words]]


@functools.lru_cache(maxsize=16384)
def _name_words(name: str) -> tuple[str, ...]:
    """``words`` of a name, remembered: the same channel and user names come back in search
    after search, and each is split for the tier, the score and typo matching."""
    return tuple(words(name, max_words=32))


def _prefix(word: str) -> bool:
    # One letter as a prefix would match a good part of the vocabulary: whole words only.
    return len(word) >= 2


def fts_match(query_words: Sequence[str]) -> str:
    """An FTS5 query: every word, each as a prefix (the user may not have finished typing)."""
    return " ".join(f'"{w}"*' if _prefix(w) else f'"{w}"' for w in query_words)


def fts_match_any(alternatives: Sequence[Sequence[str]]) -> str:
    """An FTS5 query: for every query word, itself (a prefix) or one of its corrections."""
    groups = []
    for words_ in alternatives:
        first, *others = words_
        terms = [f'"{first}"*' if _prefix(first) else f'"{first}"', *(f'"{w}"' for w in others)]
        groups.append("(" + " OR ".join(terms) + ")")
    return " AND ".join(groups)


def ts_query_any(alternatives: Sequence[Sequence[str]]) -> str:
    """The ``to_tsquery`` form of ``fts_match_any``."""
    groups = []
    for words_ in alternatives:
        first, *others = words_
        terms = [f"'{first}':*" if _prefix(first) else f"'{first}'", *(f"'{w}'" for w in others)]
        groups.append("(" + " | ".join(terms) + ")")
    return " & ".join(groups)


def fts_initial(query_words: Sequence[str], columns: Sequence[str]) -> str:
    """An FTS5 query for names that start with the query: a phrase anchored at the first
    word of one of ``columns``, its last word a prefix."""
    star = "*" if _prefix(query_words[-1]) else ""
    return "{" + " ".join(columns) + '} : ^"' + " ".join(query_words) + '"' + star


def ts_query(query_words: Sequence[str]) -> str:
    """A PostgreSQL ``to_tsquery`` string: every word a quoted lexeme, as a prefix."""
    return " & ".join(f"'{w}':*" if _prefix(w) else f"'{w}'" for w in query_words)


def printable(text: str) -> str:
    """``text`` without control characters, lone surrogates and the like (PostgreSQL refuses a
    NUL in a string; no name holds any of them anyway)."""
    return "".join(ch for ch in text if ch.isprintable() or ch == " ")


def prefix_range(text: str) -> tuple[str, str] | None:
    """``lo <= name < hi`` for names (lower-cased, C collation) that start with ``text``."""
    lo = " ".join(printable(text).lower().split())
    if not lo:
        return None
    last = ord(lo[-1])
    if last >= 0x10FFFF:
        return None
    return lo, lo[:-1] + chr(last + 1)


def tier(query_words: Sequence[str], names: Iterable[str | None]) -> int:
    """TIER_EXACT if a name has exactly the query's words, TIER_PREFIX if it starts with them
    (the last one as a prefix), TIER_TEXT otherwise."""
    best = TIER_TEXT
    n = len(query_words)
    if not n:
        return best
    for name in names:
        if not name:
            continue
        name_words = list(_name_words(name)[: n + 1])
        if name_words == list(query_words):
            return TIER_EXACT
        if (
            len(name_words) >= n
            and name_words[: n - 1] == list(query_words[: n - 1])
            and name_words[n - 1].startswith(query_words[-1])
        ):
            best = TIER_PREFIX
    return best


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: a swap of two neighbours is
    one edit, "factroio" is one edit from "factorio"); stops early past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return prev[-1]


def allowed_typos(word: str) -> int:
    """Edits a word may be away and still match: none under 4 letters, 1 up to 7, then 2."""
    if len(word) < 4:
        return 0
    return 1 if len(word) <= 7 else 2


def fuzzy_matches(query_words: Sequence[str], names: Iterable[str | None]) -> bool:
    """Every query word is within its typo allowance of some word of the names; the last
    query word may also be a near prefix of a name word (as-you-type)."""
    name_words = [w for name in names if name for w in words(name, max_words=32)]
    if not query_words or not name_words:
        return False
    last = len(query_words) - 1
    for i, q in enumerate(query_words):
        limit = allowed_typos(q)
        ok = False
        for w in name_words:
            exact = w.startswith(q) if i == last else w == q
            if exact:
                ok = True
            elif limit and edit_distance(q, w, limit) <= limit:
                ok = True
            elif limit and i == last and len(w) > len(q):
                ok = min(edit_distance(q, w[:k], limit) for k in (len(q) - 1, len(q))) <= limit
            if ok:
                break
        if not ok:
            return False
    return True


def fuzzy_tier(
    query_words: Sequence[str],
    close: dict[str, list[str]],
    names: Iterable[str | None],
    others: Iterable[str | None] = (),
) -> int | None:
    """For a row found through typo corrections: TIER_FUZZY when a name as a whole is the
    corrected query, TIER_FUZZY_PART when every word (or a correction of it) is somewhere in
    the names or ``others``, None when not (set lookups only: no edit distance per row)."""
    n = len(query_words)
    name_lists = [_name_words(name) for name in names if name]
    other_words = {w for text in others if text for w in _name_words(text)}
    everything = {w for ws in name_lists for w in ws} | other_words

    def found(i: int, q: str, pool: Iterable[str]) -> bool:
        pool = list(pool)
        if (i == n - 1 and any(w.startswith(q) for w in pool)) or q in pool:
            return True
        return any(c in pool for c in close.get(q, ()))

    if not all(found(i, q, everything) for i, q in enumerate(query_words)):
        return None
    whole = any(
        len(ws) == n and all(found(i, q, [ws[i]]) for i, q in enumerate(query_words))
        for ws in name_lists
    )
    return TIER_FUZZY if whole else TIER_FUZZY_PART


def corrections(word: str, terms: Iterable[str], last: bool, most: int = 5) -> list[str]:
    """The vocabulary words ``word`` may be a typo of, the closest first: within its typo
    allowance, or (``last``: the user may still be typing) with a near prefix."""
    limit = allowed_typos(word)
    if not limit:
        return []
    scored = []
    for term in {t.lower() for t in terms if t and _WORD_RE.fullmatch(t)}:
        if term == word or len(term) > MAX_WORD_CHARS:
            continue
        d = edit_distance(word, term, limit)
        if d > limit and last and len(term) > len(word):
            d = min(edit_distance(word, term[:k], limit) for k in (len(word) - 1, len(word)))
        if d <= limit:
            scored.append((d, term))
    return [term for _, term in sorted(scored)[:most]]


def name_score(query_words: Sequence[str], names: Iterable[str | None]) -> int:
    """How many of the query's words start a word of the names: the text score that orders
    hits of equal tier (and liveness, followers)."""
    name_words = {w for name in names if name for w in _name_words(name)}
    return sum(1 for q in query_words if any(w.startswith(q) for w in name_words))


def grams(word: str) -> list[str]:
    """Substrings a typo is likely to leave intact: trigrams of a short word, 4-grams of a
    longer one (more selective, and a single typo still leaves some whole)."""
    n = 3 if len(word) <= 6 else 4
    return [word[i : i + n] for i in range(len(word) - n + 1)]


def fuzzy_fts_match(query_words: Sequence[str]) -> str | None:
    """An FTS5 query for a trigram table: any of the grams of the words typos may hit."""
    found: list[str] = []
    for w in query_words:
        if allowed_typos(w):
            for g in grams(w):
                if g not in found:
                    found.append(g)
    if not found:
        return None
    return " OR ".join('"' + g.replace('"', '""') + '"' for g in found)


def encode_cursor(kind: str, key: Sequence[float]) -> str:
    raw = json.dumps([kind, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, length: int) -> tuple[float, ...]:
    """The sort key a cursor of ``kind`` holds; InvalidCursor for anything else."""
    if len(cursor) > 512:
        raise InvalidCursor("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("malformed cursor") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] != kind
        or not isinstance(value[1], list)
        or len(value[1]) != length
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 2**63
            for v in value[1]
        )
    ):
        raise InvalidCursor("not a cursor of this search")
    return tuple(value[1])
