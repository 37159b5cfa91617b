"""Imports point down the layers of docs/ARCHITECTURE.md (the picture and "Imports go down"):

    cli.py, api.py, tools            the top: may import anything
    launch | experiments             peers that do not import each other (launch's documented readers aside)
    engine
    data, models, methods, evaluation
    utils, the package root (semiseg.__version__)

Every import of every module is read with `ast` (also the deferred ones inside functions), so a
lazy import cannot hide an arrow that points up.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import semiseg

PACKAGE = Path(semiseg.__file__).parent
LAYERS = {'utils': 0, 'data': 1, 'models': 1, 'methods': 1, 'evaluation': 1, 'engine': 2,
          'experiments': 3, 'launch': 3, 'cli': 4, 'api': 4, 'tools': 4,
          '': 0}   # the package itself: semiseg.__version__ only
# launch's documented entry points into experiments (docs/ARCHITECTURE.md): the run folder writes and
# reads configs with experiments.io; status, the folder index and results match folders by
# experiments.identity's keys; results compares with experiments.published's numbers
LAUNCH_READS_EXPERIMENTS = {
    'semiseg.launch.rundir': {'semiseg.experiments.io'},
    'semiseg.launch.runindex': {'semiseg.experiments.identity'},
    'semiseg.launch.status': {'semiseg.experiments.identity'},
    'semiseg.launch.results': {'semiseg.experiments.identity', 'semiseg.experiments.published'},
}


def module_name(path: Path) -> str:
    parts = ('semiseg',) + path.relative_to(PACKAGE).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the semiseg modules `path` imports (relative imports resolved)."""
    module = module_name(path)
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            found.add(name)
            found.update(f'{name}.{alias.name}' for alias in node.names   # `from semiseg import engine`
                         if name == 'semiseg')
    return {name for name in found if name == 'semiseg' or name.startswith('semiseg.')}


def layer_of(module: str) -> str:
    return module.split('.')[1] if module.count('.') else ''


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob('*.py')):
        module = module_name(path)
        layer = layer_of(module)
        for target in sorted(imported_modules(path)):
            target_layer = layer_of(target)
            if target_layer == layer or target_layer not in LAYERS:
                continue
            if target in LAUNCH_READS_EXPERIMENTS.get(module, ()):
                continue
            same_rank = LAYERS[target_layer] == LAYERS[layer] and LAYERS[layer] == LAYERS['launch']
            if LAYERS[target_layer] > LAYERS[layer] or same_rank:
                problems.append(f'{module} imports {target} ({layer} -> {target_layer})')
    return problems


def test_every_import_points_down():
    assert upward_imports() == []


def test_the_scan_sees_deferred_and_relative_imports():
    engine_run = PACKAGE / 'engine' / 'run.py'
    assert 'semiseg.engine.config_check' in imported_modules(engine_run)     # a deferred import in a function
    assert 'semiseg.experiments.naming' in imported_modules(PACKAGE / 'experiments' / 'config.py')   # `.naming`


def test_an_upward_import_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / 'semiseg'
    (fake / 'data').mkdir(parents=True)
    (fake / 'data' / 'x.py').write_text('def f():\n    from semiseg.experiments.config import build_config\n')
    (fake / 'launch').mkdir()
    (fake / 'launch' / 'status.py').write_text('from semiseg.experiments.config import build_config\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', fake)
    assert upward_imports() == [
        'semiseg.data.x imports semiseg.experiments.config (data -> experiments)',
        'semiseg.launch.status imports semiseg.experiments.config (launch -> experiments)']
