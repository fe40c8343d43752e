"""axe-core in the browser tests: a page with a serious or critical accessibility violation fails.

axe-core is vendored under tests/browser/vendor/ for the tests only; the app never serves it.
It is injected into the page under test with Playwright (a script tag added by the test
driver, not by the page, so the app's Content-Security-Policy is not loosened for it).
"""

from __future__ import annotations

from pathlib import Path

AXE_SCRIPT = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


def serious_violations(page) -> list[dict]:
    """axe's violations of impact serious or critical on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated rather than added as a <script>: a strict CSP may refuse a script tag.
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    results = page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations"]});
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }"""
    )
    return [violation for violation in results if violation["impact"] in BLOCKING_IMPACTS]


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['impact']}: {violation['id']} ({violation['help']})")
        for node in violation["nodes"][:10]:
            summary = (node["summary"] or "").replace("\n", " ")
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)


def assert_no_serious_violations(page) -> None:
    """Fails, listing each violation and the elements behind it, when axe finds a serious or
    critical accessibility problem on the page."""
    violations = serious_violations(page)
    assert not violations, f"axe on {page.url}:\n{describe(violations)}"
