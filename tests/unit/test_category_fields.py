"""The catalogue's and a channel's language field rules, without a database: what a form may
send, how it is normalised, and what is refused (with a message naming the field)."""

from __future__ import annotations

import pytest

from storage import categories
from storage.channels import clean_channel_changes, clean_language
from storage.errors import ValidationError


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        (" de ", "de"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("fil", "fil"),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_language_tags_are_normalised(raw: str | None, stored: str | None) -> None:
    assert clean_language(raw) == stored


@pytest.mark.parametrize(
    "raw", ["english", "e", "en-", "en-USA-x", "12", "en US", "e\nn", 5, ["en"], "x" * 17]
)
def test_bad_language_tags_are_refused(raw: object) -> None:
    with pytest.raises(ValidationError, match="language"):
        clean_language(raw)


def test_channel_changes_take_language_and_keep_the_category_choice_for_the_catalogue() -> None:
    out = clean_channel_changes({"language": "PT-pt", "category": "  retro-gaming "})
    assert out == {"language": "pt-PT", "category": "retro-gaming"}
    assert clean_channel_changes({"category": ""}) == {"category": None}
    with pytest.raises(ValidationError, match="category"):
        clean_channel_changes({"category": ["Music"]})


def test_slugs_made_from_names() -> None:
    assert categories.slug_for("Baldur's Gate 3") == "baldur-s-gate-3"
    assert categories.slug_for("Science & Technology") == "science-technology"
    assert categories.slug_for("!!!") == "category"
    assert categories.slug_for("Émission Spéciale") == "emission-speciale"
    assert len(categories.slug_for("x" * 200)) == categories.SLUG_MAX


def test_category_changes() -> None:
    assert categories.clean_changes({"name": " Chess ", "description": None}) == {
        "name": "Chess",
        "description": "",
    }
    assert categories.clean_changes({"retired": True}) == {"retired": True}
    for bad in (
        {"name": ""},
        {"name": "a\nb"},
        {"name": "x" * 65},
        {"slug": "Has Spaces"},
        {"slug": "-lead"},
        {"retired": "yes"},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            categories.clean_changes(bad)
    # A description may have several lines.
    assert categories.clean_changes({"description": "a\nb"}) == {"description": "a\nb"}
