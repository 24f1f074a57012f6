#!/usr/bin/env python3
"""The crate's module layout, checked: which top-level modules of `src/` may
import which (README › Development › Layout). Imports are the `crate::`,
`super::` and `self::` paths in the code (comments and `#[cfg(test)] mod
tests` left out). Prints the largest cycle of files and the top-level
graph with `--graph`; exits 1 when a rule is broken."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')

MIDDLEWARE = {'middleware', 'scope', 'jsonrpc', 'form', 'metadata', 'extract', 'buffered'}
SOURCES = {'introspection', 'jwt', 'source'}
ENGINE = {'engine', 'cache_key', 'cache'}
MODEL = {'principal', 'binding', 'claims', 'validate', 'resource'}
FLEET = {'fleet'}
EXTRACTION = {'token'}


LINES = {}


def read_files():
    files = {}
    for d, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith('.rs'):
                path = os.path.join(d, name)
                text = open(path, encoding='utf-8').read()
                LINES[os.path.relpath(path, ROOT)] = text.count('\n')
                cut = re.search(r'#\[cfg\(test\)\]\s*mod tests', text)
                if cut:
                    text = text[:cut.start()]
                text = '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('//'))
                files[os.path.relpath(path, ROOT)] = text
    return files


def module_path(rel):
    parts = rel[:-3].split('/')
    return parts[:-1] if parts[-1] in ('mod', 'lib') else parts


def edges(files):
    by_module = {tuple(module_path(r)): r for r in files}

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in by_module:
                return by_module[tuple(parts[:n])]
        return None

    single = re.compile(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)')
    group = re.compile(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}', re.S)
    out = {r: set() for r in files}
    for rel, text in files.items():
        here = module_path(rel)
        paths = []
        for kind, path, inner in group.findall(text):
            for item in inner.split(','):
                item = item.strip().split(' as ')[0].strip()
                if item:
                    paths.append((kind, path + ('' if item == 'self' else '::' + item.split('::')[0])))
        paths += single.findall(text)
        for kind, path in paths:
            base = [] if kind == 'crate' else (list(here) if kind == 'self' else list(here[:-1]))
            target = resolve(base + [p for p in path.split('::') if p])
            if target and target != rel:
                out[rel].add(target)
    return out


def top(rel):
    return rel.split('/')[0].removesuffix('.rs')


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found, key=len, reverse=True)


def main():
    files = read_files()
    file_graph = edges(files)
    graph = {}
    for a, targets in file_graph.items():
        for b in targets:
            if top(a) != top(b) and top(a) != 'lib':
                graph.setdefault(top(a), set()).add(top(b))
    for node in list(graph) + [b for s in graph.values() for b in s]:
        graph.setdefault(node, set())
    rules = [
        (EXTRACTION | SOURCES | ENGINE | MODEL | FLEET, MIDDLEWARE, 'never import the middleware'),
        (ENGINE, SOURCES, 'the engine imports no source'),
        (MODEL, SOURCES | ENGINE | FLEET, 'the model imports no source, engine or fleet'),
        (FLEET, SOURCES, 'the fleet imports no source'),
    ]
    broken = []
    for sources, forbidden, why in rules:
        for a in sorted(sources):
            for b in sorted(graph.get(a, ())):
                if b in forbidden:
                    broken.append(f'{a} imports {b}: {why}')
    for a in sorted(SOURCES):
        for b in sorted(graph.get(a, ())):
            if b in SOURCES:
                broken.append(f'{a} imports {b}: sources never import each other')
    for a in sorted(graph):
        if a != 'test_util' and 'test_util' in graph[a]:
            broken.append(f'{a} imports test_util: nothing outside it does')
    for cycle in cycles(graph):
        broken.append('top-level modules in a circle: ' + ' '.join(cycle))
    file_cycles = cycles(file_graph)
    if file_cycles:
        biggest = file_cycles[0]
        lines = sum(LINES[f] for f in biggest)
        print(f'largest file cycle: {len(biggest)} files, {lines} lines ({" ".join(biggest)})')
    if '--graph' in sys.argv:
        for a in sorted(graph):
            print(f'{a} -> {" ".join(sorted(graph[a]))}')
    for line in broken:
        print('layout:', line)
    sys.exit(1 if broken else 0)


if __name__ == '__main__':
    main()
