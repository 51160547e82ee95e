"""The notebooks as a reader meets them: no path of one machine in them, and every export cell holds one idea (at most
60 lines; the rhythm of nbs/: definition, then its test right below)."""
import json, re
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).resolve().parents[1] / "nbs").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|Users|root|mnt|scratch)/[\w.-]+|[A-Z]:\\\\[\w.-]+")
MAX_EXPORT_LINES = 60


def cells(nb: Path):
    return [("".join(c["source"]), c["cell_type"]) for c in json.loads(nb.read_text())["cells"]]


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.name)
def test_no_machine_path(nb):
    hits = [m.group(0) for src, _ in cells(nb) for m in MACHINE_PATH.finditer(src)]
    assert not hits, f"{nb.name}: machine paths {hits}; use DIKE_DATA_DIR / project_root() / a relative path"


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.name)
def test_export_cells_hold_one_idea(nb):
    long = [(len(src.splitlines()), src.splitlines()[1][:60]) for src, kind in cells(nb)
            if kind == "code" and src.startswith("#| export") and len(src.splitlines()) > MAX_EXPORT_LINES]
    assert not long, f"{nb.name}: export cells over {MAX_EXPORT_LINES} lines: {long}"


def test_the_path_rule_would_catch_one():
    assert MACHINE_PATH.search('os.environ.setdefault("DIKE_DATA_DIR", "/work/shared/data")')
    assert not MACHINE_PATH.search("Path(tempfile.mkdtemp()) / 'x'; 'dike/core.py'; url='https://x.org/work/a'")
