"""What the three recipe tests share (add a benchmark, a compression method, a figure): a copy of the project, a notebook
written from cells, and the digest of a tree to show that the recipe changed nothing else."""
import hashlib, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def notebook(cells) -> dict:
    "An .ipynb dict from `[(cell_type, source), ...]`."
    out = [{"cell_type": t, "id": f"c{i}", "metadata": {}, "source": s.splitlines(keepends=True),
            **({"execution_count": None, "outputs": []} if t == "code" else {})} for i, (t, s) in enumerate(cells)]
    return {"cells": out, "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def tree(root: Path, parts=("nbs", "data", "tests", "experiments")) -> dict:
    "relpath -> sha256 of every file below `parts` of `root`."
    out = {}
    for part in parts:
        for p in sorted((root / part).rglob("*")):
            if p.is_file(): out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def project_copy(dest: Path, parts=("nbs", "dike", "data", "tests", "experiments")) -> Path:
    "A copy of the project's `parts` and pyproject.toml in `dest` (no data cache, no bytecode)."
    for part in parts:
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("raw", "__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest

NBDEV_EXPORT = Path(__import__("sys").executable).with_name("nbdev-export")   # the exporter beside this python
