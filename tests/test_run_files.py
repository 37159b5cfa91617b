"""The run folder's file names are spelled once, in semiseg/utils/run_files.py: no other module of
the package holds one of them as a string (docstrings and comments may mention them)."""
from __future__ import annotations

import ast
from pathlib import Path

import semiseg
from semiseg.utils import run_files

PACKAGE = Path(semiseg.__file__).parent
# 'debug' is also the debug launcher's name and '.lock' the suffix of launch claims (launch/claim.py)
NAMES = {value for key, value in vars(run_files).items()
         if key.isupper() and isinstance(value, str) and key not in ('DEBUG_DIR', 'LOCK_FILE')}


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(path: Path) -> list[str]:
    """`file:line name` for each string constant (f-string parts included) naming a run-folder file."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    docs = docstring_nodes(tree)
    hits = [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in docs]
    return [f'{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value}'
            for node in sorted(hits, key=lambda n: (n.lineno, n.col_offset))]


def test_run_folder_names_only_in_run_files():
    assert NAMES >= {'config.yaml', 'state.json', 'results.json', 'latest.pth', 'best.pth', 'train.log',
                     'slurm_job.json'}
    found = [hit for path in sorted(PACKAGE.rglob('*.py')) if path.name != 'run_files.py'
             for hit in spelled_names(path)]
    assert found == []


def test_a_spelled_name_is_found(tmp_path):
    module = tmp_path / 'semiseg' / 'x.py'
    module.parent.mkdir()
    module.write_text('"""Reads state.json."""\nfrom pathlib import Path\n\n\ndef f(d):\n'
                      '    return f\'{Path(d) / "state.json"}\', Path(d) / \'latest.pth\'\n')
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / 'semiseg'
    try:
        assert spelled_names(module) == ['semiseg/x.py:6 state.json', 'semiseg/x.py:6 latest.pth']
    finally:
        PACKAGE = saved
