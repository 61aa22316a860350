#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle.

A module is a file (src/a/b.rs is crate::a::b, src/a/mod.rs is crate::a). An
edge A -> B means non-test code in A names an item of B: a `use` path or an
inline `crate::`/`super::`/`self::` path. A path is resolved to the module
that defines the item: through the longest prefix that is a module, then
through that module's `pub use` re-exports, so importing a type through its
parent's re-export is an edge to the defining module (as rustc resolves it).
Code after `#[cfg(test)]` is left out: tests may reach into any module.

Usage: module-cycles.py [SRC_DIR]   (default: src). Prints each cycle found.
"""

import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def production_text(text):
    # drop comments, then everything from the first `#[cfg(test)]`
    text = re.sub(r"//[^\n]*", "", text)
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def use_trees(text):
    """Every path of every `use` tree, as a list of segments."""
    for match in re.finditer(r"\buse\s+([^;]+);", text):
        yield from expand(match.group(1).replace("\n", " "))


def expand(tree, prefix=()):
    tree = tree.strip()
    if not tree:
        return
    brace = tree.find("{")
    if brace < 0:
        path = tree.split(" as ")[0].strip()
        yield prefix + tuple(part for part in path.split("::") if part)
        return
    head = tuple(part for part in tree[:brace].split("::") if part)
    inner = tree[brace + 1 : tree.rfind("}")]
    depth, start = 0, 0
    for index, char in enumerate(inner + ","):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            part = inner[start:index].strip()
            start = index + 1
            if part == "self":
                yield prefix + head
            elif part:
                yield from expand(part, prefix + head)


def absolute(module, path):
    """The path from the crate root, or None for an external crate."""
    if not path:
        return None
    if path[0] == "crate":
        return path[1:]
    if path[0] == "self":
        return module + path[1:]
    if path[0] == "super":
        base = module
        while path and path[0] == "super":
            base, path = base[:-1], path[1:]
        return base + path
    if path[0] == "registrar":  # the library, named from the binary
        return path[1:]
    return None


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                files[module_of(path)] = production_text(open(path).read())
    modules = set(files)

    # pub use re-exports: (module, name) -> the path it stands for
    reexports = {}
    for module, text in files.items():
        for match in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for path in expand(match.group(1).replace("\n", " ")):
                target = absolute(module, path) or path
                if path and path[0] not in ("crate", "self", "super"):
                    target = module + path  # `pub use child::X` in a mod.rs
                reexports[(module, path[-1])] = target

    def defining_module(path, seen=0):
        for length in range(len(path), -1, -1):
            prefix = path[:length]
            if prefix in modules:
                rest = path[length:]
                if rest and (prefix, rest[0]) in reexports and seen < 8:
                    return defining_module(reexports[(prefix, rest[0])] + rest[1:], seen + 1)
                return prefix
        return None

    edges = {module: set() for module in modules}
    for module, text in files.items():
        paths = [absolute(module, path) for path in use_trees(text)]
        # a `use child::x` inside a module names its own child
        for path in use_trees(text):
            if path and (module + path[:1]) in modules:
                paths.append(module + path)
        for match in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
            paths.append(absolute(module, tuple(match.group(1).split("::"))))
        for path in paths:
            if path is None:
                continue
            target = defining_module(path)
            if target is not None and target != module and target != ():
                edges[module].add(target)

    # Tarjan's strongly connected components
    index, lowlink, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node):
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges[node]):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(modules):
        if node not in index:
            visit(node)

    edge_count = sum(len(targets) for targets in edges.values())
    name = lambda module: "::".join(("crate",) + module)
    if cycles:
        for component in cycles:
            print("import cycle among:", ", ".join(name(module) for module in component))
            for module in component:
                inside = sorted(name(t) for t in edges[module] if t in component)
                print(f"  {name(module)} -> {', '.join(inside)}")
        return 1
    print(f"no import cycle: {len(modules)} modules, {edge_count} edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
