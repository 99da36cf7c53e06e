"""The catalogs are complete: every string the code, the templates and the scripts mark is in the
German catalog, translated, not fuzzy, with the same placeholders as its msgid. Babel extracts
the strings afresh here (babel.cfg), so a new English string without German fails this test."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from desktop_relay.i18n import LANGUAGES, language
from desktop_relay.i18n.catalogs import PLACEHOLDER, catalog_path
from desktop_relay.i18n.extraction import extract

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [code for code in LANGUAGES if code != "en"]


def _catalog(code: str):  # type: ignore[no-untyped-def]
    with catalog_path(code).open("rb") as po:
        return read_po(po, locale=code)


def _forms(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_extracted_string_is_translated_and_not_fuzzy(code: str) -> None:
    shipped = _catalog(code)
    missing, untranslated, fuzzy = [], [], []
    for message in extract(ROOT):
        if not message.id:
            continue
        entry = shipped.get(message.id)
        if entry is None:
            missing.append(message.id)
        elif not all(_forms(entry.string)):
            untranslated.append(message.id)
        elif entry.fuzzy:
            fuzzy.append(message.id)
    assert not missing, f"not in the {code} catalog (run scripts/update-catalogs): {missing}"
    assert not untranslated, f"without a {code} translation: {untranslated}"
    assert not fuzzy, f"fuzzy in the {code} catalog: {fuzzy}"


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_translation_keeps_the_placeholders_of_its_msgid(code: str) -> None:
    wrong = []
    for message in _catalog(code):
        if not message.id or not message.string:
            continue
        wanted = {frozenset(PLACEHOLDER.findall(form)) for form in _forms(message.id)}
        for form in _forms(message.string):
            found = frozenset(PLACEHOLDER.findall(form))
            # A plural form may say "one" instead of {count}; everything else must be there.
            if found not in wanted and found | {"count"} not in wanted:
                wrong.append((message.id, form))
    assert not wrong


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_catalog_has_no_entry_the_code_no_longer_uses(code: str) -> None:
    used = {message.id for message in extract(ROOT) if message.id}
    assert {message.id for message in _catalog(code) if message.id} <= used


def test_the_shipped_catalog_loads_and_translates() -> None:
    german = language("de")
    assert german.gettext("Sign out") == "Abmelden"
    assert german.ngettext("{count} minute", "{count} minutes", 1) == "1 Minute"
    assert german.ngettext("{count} minute", "{count} minutes", 45) == "45 Minuten"
    # The scripts' catalog holds what the scripts use, not every server message.
    assert "Start again" not in german.script_messages and german.script_messages["Stop"] == "Beenden"
