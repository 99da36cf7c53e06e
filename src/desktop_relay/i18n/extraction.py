"""Keeping the catalogs in step with the code: Babel extracts every msgid (babel.cfg maps the
Python, template and script files), writes the template, and merges it into each language's .po.
Used by scripts/update-catalogs and by the test that fails on a string missing from a catalog."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from .catalogs import DEFAULT_LANGUAGE, DOMAIN, LANGUAGES

# Our markers beside gettext's (_, N_, ngettext, ...): Text/PluralText in Python, t/tn in scripts.
KEYWORDS = {**DEFAULT_KEYWORDS, "Text": None, "PluralText": (1, 2), "t": None, "tn": (1, 2)}
LOCALE_DIR = Path("src", "desktop_relay", "locale")


def extract(root: Path) -> Catalog:
    """Every msgid in the checkout at root, with where it is used."""
    with (root / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    catalog = Catalog(domain=DOMAIN, project="desktop-relay", msgid_bugs_address="", charset="utf-8")
    for path, line, message, comments, context in extract_from_dir(
        root, method_map, options_map, keywords=KEYWORDS, comment_tags=("Translators:",), strip_comment_tags=True,
    ):
        catalog.add(message, None, [(path, line)], auto_comments=comments, context=context)
    return catalog


def update(root: Path) -> None:
    """Write the template (desktop_relay.pot) and merge it into every language's catalog."""
    template = extract(root)
    with (root / LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as pot:
        write_po(pot, template, width=100, include_lineno=False)
    for code in LANGUAGES:
        if code == DEFAULT_LANGUAGE:
            continue
        path = root / LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as po:
                catalog = read_po(po, locale=code, domain=DOMAIN)
        else:
            catalog = Catalog(locale=code, domain=DOMAIN, project="desktop-relay")
        # No guessed translations from similar msgids: a new string waits, untranslated, for a person.
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        with path.open("wb") as po:
            write_po(po, catalog, width=100, ignore_obsolete=True, include_lineno=False)
