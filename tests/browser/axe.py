"""axe-core in the browser tests: ``assert_accessible(page, "name")`` fails on serious or critical
violations (WCAG 2.0–2.2 A/AA and best practices) and prints the moderate and minor ones.

axe-core is vendored from npm (``static/vendor/axe-core/``, no CDN) and injected into the page
under test. The injected script is inline, so the page's context must be made with
``bypass_csp=True`` (the CSP refuses inline script everywhere else). axe reads open shadow roots,
so the widget's inside is checked with the host page.
"""

from ..conftest import REPO

AXE_SCRIPT = REPO / "static" / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
FAILING_IMPACTS = ("serious", "critical")

_RUN = """async ([selector, tags]) => {
  const context = selector ? document.querySelector(selector) : document;
  const results = await window.axe.run(context, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary})),
  }));
}"""


def axe_violations(page, *, selector: str | None = None) -> list[dict]:
    """Every violation axe finds on the page (or inside ``selector``), each with its impact."""
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    return page.evaluate(_RUN, [selector, AXE_TAGS])


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"[{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    {node['target']}: {(node['summary'] or '').splitlines()[-1:]}")
    return "\n".join(lines)


def assert_accessible(page, name: str, *, selector: str | None = None) -> list[dict]:
    """Fail on serious or critical violations; list the others in the test output."""
    violations = axe_violations(page, selector=selector)
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    others = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
    if others:
        print(f"--- axe: {name}: moderate/minor ---\n{describe(others)}")
    assert not failing, f"axe: {name}: serious/critical violations:\n{describe(failing)}"
    return violations
