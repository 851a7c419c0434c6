"""The dependency rules of README ("Where the code lives") hold and stay enforced.

``lint-imports`` (contracts in pyproject.toml) runs in ``make test`` before pytest. These tests show
that each contract would catch the import it forbids, that no import circle is left among our own
modules (imports inside functions included: grimp sees them), and the two rules import-linter
cannot express: channel-layer group names only in ``groups.py``, event payloads only in ``events.py``.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("contactcenter", "profiles", "conversations", "supervisor", "surveys")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _import_graph():
    sys.path.insert(0, str(REPO))
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(REPO))


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adjacency = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in adjacency:
        if root in index:
            continue
        work = [(root, iter(adjacency[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adjacency[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_among_our_modules():
    graph = _import_graph()
    assert len(graph.modules) > 100  # the walk saw the project, not an empty path
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert _cycles(graph) == [["a", "b", "c"]]


# One import per contract that the contract must refuse: (file to append it to, the import line,
# words of the contract's name that lint-imports must report as BROKEN).
FORBIDDEN_IMPORTS = [
    ("profiles/selectors.py", "from conversations import models as _m", "profiles imports nothing of conversations"),
    ("conversations/models/queues.py", "from conversations import sequence as _s", "conversations.models imports only pure"),
    ("conversations/services/ingest.py", "from conversations import tasks as _t", "only task modules import task modules"),
    ("conversations/selectors.py", "from conversations.services import outbound as _o", "selectors never import services"),
    ("conversations/services/outbound.py", "from conversations.simulator import client as _c",
     "never imports the simulator"),
    ("conversations/services/ingest.py", "from conversations.channels.email import parse as _p",
     "the core never imports a channel's folder"),
    ("conversations/selectors.py", "from supervisor.live import selectors as _w",
     "conversations and profiles import nothing of supervisor"),
    ("supervisor/live/selectors.py", "from conversations.services import outbound as _o",
     "selectors never import services"),
    ("conversations/services/ingest.py", "from surveys import models as _sm", "import nothing of surveys"),
    ("conversations/channels/webchat/consumer.py", "from surveys import answers as _sa", "import nothing of surveys"),
    ("conversations/selectors.py", "from supervisor.facts import models as _f",
     "conversations and profiles import nothing of supervisor"),
]


@pytest.mark.embedded  # one mode is enough: it reads files, not the database
@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports is not installed (make install-test)")
@pytest.mark.parametrize(("path", "line", "contract"), FORBIDDEN_IMPORTS, ids=[c for _, _, c in FORBIDDEN_IMPORTS])
def test_lint_imports_refuses_an_import_that_breaks_a_rule(tmp_path, path, line, contract):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")

    def lint():
        return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    with open(tmp_path / path, "a") as target:
        target.write(f"\n{line}  # re-added by the test\n")
    broken = lint()
    assert broken.returncode != 0, broken.stdout
    report = " ".join(broken.stdout.split())
    assert f"{contract}" in report and "BROKEN" in report, broken.stdout


def _python_files():
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                yield path


_LAYER_CALLS = {"group_send", "group_add", "group_discard"}
_EVENT_SENDS = {"send_on_commit", "publish_now", "group_send"}


def _literal_string(node) -> bool:
    return isinstance(node, (ast.Constant, ast.JoinedStr)) and not (
        isinstance(node, ast.Constant) and not isinstance(node.value, str))


def test_group_names_only_in_groups_module():
    """Channels accepts only some characters in a group name, and every sender and listener must
    agree on it: names are built by conversations/groups.py and nowhere else."""
    offenders = []
    for path in _python_files():
        if path.name == "groups.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node) in _LAYER_CALLS and node.args:
                if _literal_string(node.args[0]):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
        # A module-level group-name builder belongs in a groups.py too.
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_group"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} def {node.name}")
    assert offenders == []


def test_event_payloads_only_in_events_module():
    """A websocket event's payload (a dict with a "type") is built by conversations/events.py; other
    modules ask it for one, so the console, the widget and the tests read one shape per event."""
    offenders = []
    for path in _python_files():
        if path.name == "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and _called_name(node) in _EVENT_SENDS):
                continue
            for argument in node.args[1:] + [k.value for k in node.keywords]:
                if isinstance(argument, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == "type" for k in argument.keys):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Call) and func.args:  # async_to_sync(layer.group_send)(...)
        func = func.args[0]
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""
