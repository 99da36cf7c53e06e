"""axe-core on the relay's own pages, in the browser tests: fails on serious or critical
violations with a list a person can read (rule, impact, what to fix, which elements).

axe-core comes from npm into build/axe/ (scripts/ensure-axe), never from a CDN. The pages' CSP
allows no injected <script>, so its source is evaluated through Playwright (DevTools evaluation,
which the CSP does not govern). The desktop's web client in the session page's frame is the
container's, not the relay's: it is left out.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from apache_harness import missing

AXE = Path(os.environ.get("DESKTOP_RELAY_AXE")
           or Path(__file__).resolve().parents[2] / "build" / "axe" / "node_modules" / "axe-core" / "axe.min.js")
# What fails a page; moderate and minor findings are reported by axe but do not.
FAILING = ("serious", "critical")


@cache
def axe_source() -> str:
    """axe.min.js, or skip (fail in CI) without it."""
    if not AXE.is_file():
        missing(f"axe-core is not installed at {AXE}", "scripts/ensure-axe")
    return AXE.read_text(encoding="utf-8")


def violations(page) -> list[dict]:
    """axe's serious and critical violations on the page as it is now (the frame left out)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    found = page.evaluate(
        """async () => {
            const results = await axe.run({ exclude: [["iframe#desktop"]] },
                                          { iframes: false, resultTypes: ["violations"] });
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({ target: n.target.join(" "), summary: n.failureSummary })),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in FAILING]


def readable(found: list[dict]) -> str:
    """Violations as lines: the rule, its impact and help, then each element and what to fix."""
    lines = []
    for v in found:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)


def assert_accessible(page, what: str) -> None:
    """No serious or critical axe violation on `page`; `what` names the page in the failure."""
    found = violations(page)
    assert not found, f"axe-core found serious or critical violations on {what} ({page.url}):\n{readable(found)}"
