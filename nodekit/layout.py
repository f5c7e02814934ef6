"""The PC side's layout in figures: rooms, modules, lines, import arrows, circles, error types.

    python -m nodekit.layout [--root nodekit]

A room is what sits directly in nodekit/: a package (broker/, board/, sim/, bench/) or a
module of its own (doctor.py, rules.py, ...). An arrow is one room importing another, lazy
imports included. ORDER lists the rooms from the lowest: a room imports only rooms before
it, so there is no circle (host_tests/test_layout.py holds that). The simulated board's
own files (sim/simboard/, sim/compat/) run inside the node's process as `machine`,
`network`, ...: they import no nodekit module and are left out.
"""
import argparse
import ast
import pathlib
import sys

ORDER = ("errors", "rules", "system", "broker", "board", "sim", "doctor", "bench", "layout")
STAND_INS = ("sim/simboard", "sim/compat", "simboard", "compat")  # the board's stand-ins


def modules(root, stand_ins=False):
    """{dotted name: path} of the PC side's modules under root (a nodekit/ folder); with
    stand_ins, the simulated board's files too (imported by the PC side, scanned by no one)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not stand_ins and any(rel.as_posix().startswith(s + "/") for s in STAND_INS):
            continue
        parts = ("nodekit",) + rel.with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path, name, known):
    """The nodekit modules `name` (at path) imports, lazy imports included."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from nodekit.sim import fleet`: the module, else the package
                found.add(base + "." + a.name if base + "." + a.name in known else base)
    return {m for m in found if m in known and m != name}


def room(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None  # None: nodekit/__init__ (REPO), everyone's


def circles(graph):
    """The strongly connected groups of more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def error_types(mods):
    """Exception classes the PC side defines (the tools' errors)."""
    out = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception", "Failure"))
                    for b in node.bases):
                out.append("%s.%s" % (name, node.name))
    return sorted(out)


def survey(root):
    mods, known = modules(root), modules(root, stand_ins=True)
    known.update((p.rsplit(".", 1)[0], None) for p in list(known) if p.count(".") > 1)  # their packages
    graph = {m: imports(p, m, known) for m, p in mods.items()}
    rooms = {}
    for m, deps in graph.items():
        r = room(m)
        if r is None:
            continue
        rooms.setdefault(r, set()).update(room(d) for d in deps if room(d) not in (None, r))
    return {"modules": len(mods), "lines": sum(len(p.read_text().splitlines()) for p in mods.values()),
            "module_arrows": sum(len(d) for d in graph.values()), "module_circles": circles(graph),
            "rooms": len(rooms), "room_arrows": sum(len(d) for d in rooms.values()),
            "room_circles": circles(rooms), "room_graph": rooms, "errors": error_types(mods)}


def upward(room_graph):
    """Arrows from a room to one not below it in ORDER (or a room ORDER does not know)."""
    rank = {r: i for i, r in enumerate(ORDER)}
    return sorted("%s -> %s" % (r, d) for r, deps in room_graph.items() for d in deps
                  if r not in rank or d not in rank or rank[d] >= rank[r])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="layout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent))
    s = survey(pathlib.Path(ap.parse_args(argv).root))
    print("rooms %d, room arrows %d, room circles %d" % (s["rooms"], s["room_arrows"], len(s["room_circles"])))
    print("modules %d, lines %d, import arrows %d, module circles %d"
          % (s["modules"], s["lines"], s["module_arrows"], len(s["module_circles"])))
    print("error types %d: %s" % (len(s["errors"]), ", ".join(s["errors"])))
    for group in s["room_circles"] + s["module_circles"]:
        print("circle: %s" % " <-> ".join(group))
    for r in sorted(s["room_graph"]):
        print("  %-8s -> %s" % (r, ", ".join(sorted(s["room_graph"][r])) or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
