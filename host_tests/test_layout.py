"""A newcomer finds their room: the PC side laid out by job, with no circle, one error type, and the names on the broker defined once by the board code.

The rooms and their order are nodekit/layout.py's ORDER (python -m nodekit.layout prints the
figures); the names on the broker are lib/node/topics.py's.
"""
import ast
import json
import os
import re
import subprocess
import sys

from nodekit import REPO, layout, rules
from nodekit.rules import topics

NODEKIT = REPO / "nodekit"
SURVEY = layout.survey(NODEKIT)


def test_no_room_imports_a_higher_one_and_there_is_no_circle():
    assert set(SURVEY["room_graph"]) <= set(layout.ORDER), "a room nodekit/layout.py ORDER does not place"
    assert layout.upward(SURVEY["room_graph"]) == []
    assert SURVEY["room_circles"] == [] and SURVEY["module_circles"] == []


def test_each_room_says_what_is_in_it():
    for package in sorted(p.parent for p in NODEKIT.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert doc, "%s/__init__.py: a docstring saying what the room holds" % package.name
        for child in sorted(package.iterdir()):
            name = child.name if child.is_dir() else child.stem
            if name.startswith("__") or (child.is_file() and child.suffix != ".py"):
                continue
            assert re.search(r"\b%s\b" % re.escape(name), doc), "%s/__init__.py does not name %s" % (
                package.name, child.name)


def test_the_tools_have_one_error_type():
    # doctor.Fail is a check's verdict (printed as a FAIL line), never a tool's error.
    assert SURVEY["errors"] == ["nodekit.doctor.Fail", "nodekit.errors.Failure"]


def test_a_tools_error_is_one_line_and_its_traceback_comes_when_asked():
    argv = [sys.executable, "-m", "nodekit.board.flash", "firmware", "--board", "esp99"]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "make firmware: BOARD=esp99: unknown board (known: %s)\n" % ", ".join(
        json.loads((REPO / "firmware" / "boards.json").read_text())["boards"])
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, env=dict(os.environ, DEBUG="1"))
    assert r.returncode == 1 and "Traceback" in r.stderr
    assert "nodekit.errors.Failure: BOARD=esp99: unknown board" in r.stderr


def _strings(path):
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_the_pc_side_never_spells_out_a_topic():
    pattern = re.compile(r"%s/|^%s$" % (rules.ROOT, topics.COMMAND))
    found = ["%s: %r" % (p.relative_to(REPO), s) for p in sorted(NODEKIT.rglob("*.py"))
             if "simboard" not in p.parts for s in _strings(p) if pattern.search(s)]
    assert found == [], "take them from nodekit.rules (lib/node/topics.py)"


def test_the_dashboard_uses_the_board_codes_names():
    js = (REPO / "dashboard" / "src" / "connection.js").read_text()
    names = dict(re.findall(r"(\w+): '([^']*)'", re.search(r"export const NAMES = \{(.*?)\};", js, re.S).group(1)))
    topic = {k: "%s/%%s/%s" % (names["root"], v) for k, v in names.items() if k not in ("root", "command")}
    assert names["command"] == topics.COMMAND
    assert topic == {"value": topics.VALUE, "second": topics.SECOND, "status": topics.STATUS, "led": topics.LED,
                     "stats": topics.STATS, "ledSet": topics.LED_SET}
    leaves = re.search(r"export const LEAVES = \[(.*?)\];", js).group(1)
    assert sorted(topic[k] for k in re.findall(r"NAMES\.(\w+)", leaves)) == sorted(topics.WRITES)
    for src in sorted((REPO / "dashboard" / "src").glob("*.js")):  # nowhere else
        text = src.read_text() if src.name != "connection.js" else js.split("export const NAMES")[0]
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        assert not re.search(r"'%s/|'%s'" % (rules.ROOT, topics.COMMAND), code), src.name


def test_the_simulated_board_knows_the_chips_the_images_are_for():
    images = json.loads((REPO / "firmware" / "boards.json").read_text())["images"]
    source = (NODEKIT / "sim" / "simboard" / "_port.py").read_text()
    chips = ast.literal_eval(re.search(r"^CHIPS = (\(.*\))$", source, re.M).group(1))
    assert set(chips) == {i["chip"] for i in images.values()}
    assert all(rules.board_chip(c) == c for c in chips)


def test_the_tests_mirror_the_rooms_and_each_says_its_story():
    tests = REPO / "host_tests"
    rooms = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms <= set(layout.ORDER) | {"node"}, "host_tests/<room>/: a room of nodekit, or node (the board code)"
    for path in sorted(tests.rglob("test_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
        first, _, rest = doc.partition("\n")
        assert first.endswith(".") and (not rest or rest.startswith("\n")), (
            "%s: its docstring's first line, alone, says the user story it proves" % path.relative_to(tests))


def test_the_readmes_what_runs_where_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## What runs where", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:nodekit|lib|host_tests|dashboard|firmware|bench)/[\w/.]*)`", table))
    assert named, "the table names paths"
    for path in sorted(named):
        assert (REPO / path).exists(), "README names %s, which is not in the tree" % path
    for module in sorted((REPO / "lib" / "node").glob("[!_]*.py")):
        assert "`%s`" % module.name in table, "README's what runs where does not name lib/node/%s" % module.name
    for room in layout.ORDER:
        where = "nodekit/%s/" % room if (NODEKIT / room).is_dir() else "nodekit/%s.py" % room
        assert where in named, "README's what runs where does not name %s" % where
