"""The pure part of search (storage.search_text): query words, the FTS5 and tsquery strings
built from them, match tiers, typo tolerance and cursors."""

from __future__ import annotations

import pytest

from storage import search_text as st


def test_words_keep_letters_and_digits_only() -> None:
    assert st.words('  "Factorio" NEAR(belts*) -speed_run  ') == [
        "factorio",
        "near",
        "belts",
        "speed",
        "run",
    ]
    assert st.words("((((") == []
    assert st.words("Émission spéciale") == ["émission", "spéciale"]
    assert st.words("a b c d e f g h i j", max_words=3) == ["a", "b", "c"]
    assert st.words("x" * 500) == ["x" * st.MAX_WORD_CHARS]


def test_fts_and_tsquery_strings_quote_every_word() -> None:
    assert st.fts_match(["near", "or", "x"]) == '"near"* "or"* "x"'
    assert st.fts_initial(["star", "wa"], ["name", "slug"]) == '{name slug} : ^"star wa"*'
    assert st.ts_query(["factorio", "x"]) == "'factorio':* & 'x'"
    assert st.fts_match_any([["factroio", "factorio"], ["x"]]) == (
        '("factroio"* OR "factorio") AND ("x")'
    )
    assert st.ts_query_any([["zeldda", "zelda"]]) == "('zeldda':* | 'zelda')"


def test_prefix_range() -> None:
    assert st.prefix_range("  Factorio  Mega ") == ("factorio mega", "factorio megb")
    assert st.prefix_range("   ") is None
    assert st.prefix_range("fact\x00orio\ud800") == ("factorio", "factorip")


def test_tiers() -> None:
    assert st.tier(["factorio"], ["Factorio"]) == st.TIER_EXACT
    assert st.tier(["factorio"], ["Factorio!"]) == st.TIER_EXACT  # punctuation is not a word
    assert st.tier(["fact"], ["Factorio Trains"]) == st.TIER_PREFIX
    assert st.tier(["factorio", "tr"], ["Factorio Trains"]) == st.TIER_PREFIX
    assert st.tier(["trains"], ["Factorio Trains"]) == st.TIER_TEXT
    assert st.tier(["factorio"], [None, "", "fact-hub"]) == st.TIER_TEXT


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("factroio", "factorio", 1),  # a swap of neighbours is one edit
        ("speedrunnig", "speedrunning", 1),
        ("kitten", "sitting", 3),
        ("same", "same", 0),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert st.edit_distance(a, b, 5) == distance
    assert st.edit_distance(a, b, 0) == (0 if distance == 0 else 1)


def test_corrections_from_the_vocabulary() -> None:
    vocabulary = ["factorio", "factory", "fiction", "speedrunning", "speedrun", "zelda"]
    assert st.corrections("factroio", vocabulary, last=False) == ["factorio"]
    assert st.corrections("speedrunnig", vocabulary, last=False) == ["speedrunning"]
    # The word being typed: a near prefix counts.
    assert "factorio" in st.corrections("factroi", vocabulary, last=True)
    assert st.corrections("factroi", vocabulary, last=False) == []
    assert st.corrections("zel", vocabulary, last=True) == []  # too short to guess at


def test_fuzzy_tier_uses_the_corrections() -> None:
    close = {"factroio": ["factorio"]}
    assert st.fuzzy_tier(["factroio"], close, ["Factorio"]) == st.TIER_FUZZY
    assert st.fuzzy_tier(["factroio"], close, ["Factorio Trains"]) == st.TIER_FUZZY_PART
    assert st.fuzzy_tier(["factroio"], close, ["Belts"], ["factorio"]) == st.TIER_FUZZY_PART
    assert st.fuzzy_tier(["factroio"], close, ["Belts"]) is None


def test_name_score() -> None:
    assert st.name_score(["factorio", "tr"], ["Factorio Trains"]) == 2
    assert st.name_score(["factorio", "belts"], ["Factorio Trains"]) == 1


def test_grams_and_the_fuzzy_match_string() -> None:
    assert st.grams("zeldda") == ["zel", "eld", "ldd", "dda"]
    assert st.grams("factroio") == ["fact", "actr", "ctro", "troi", "roio"]
    assert st.fuzzy_fts_match(["ab", "cd"]) is None
    assert st.fuzzy_fts_match(["zeldda"]) == '"zel" OR "eld" OR "ldd" OR "dda"'


def test_cursor_round_trip_and_refusals() -> None:
    cursor = st.encode_cursor("channels", (1, 0, -50, -1, 42))
    assert st.decode_cursor("channels", cursor, 5) == (1, 0, -50, -1, 42)
    for bad in ("", "!!!", "bm90IGpzb24", cursor + "x" * 600):
        with pytest.raises(st.InvalidCursor):
            st.decode_cursor("channels", bad, 5)
    with pytest.raises(st.InvalidCursor):
        st.decode_cursor("users", cursor, 5)  # another type's
    with pytest.raises(st.InvalidCursor):
        st.decode_cursor("channels", cursor, 3)
    for value in ('["channels",[1,2,"x"]]', '["channels",[true,1,1]]', '["channels",[NaN,1,1]]'):
        raw = st.base64.urlsafe_b64encode(value.encode()).decode()
        with pytest.raises(st.InvalidCursor):
            st.decode_cursor("channels", raw, 3)
