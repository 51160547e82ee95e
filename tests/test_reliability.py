"""First run and hard days (issue 26): the README's commands on a machine without the lab's data folder."""
import shutil, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(args, cwd, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if k != "DIKE_DATA_DIR"} | (env or {})
    return subprocess.run(["make", "-s", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=60)


def test_without_the_shared_data_folder_reproduce_fetches_the_pinned_files(tmp_path):
    repo = tmp_path / "clone"; repo.mkdir()                    # no ../shared/data beside it
    for f in ("Makefile", "pyproject.toml"): shutil.copy(ROOT / f, repo / f)
    assert make(["print-data-dir"], repo).stdout.strip() == "DIKE_DATA_DIR=<unset: data/raw cache>"
    assert make(["print-data-dir"], repo, {"DIKE_DATA_DIR": "/elsewhere"}).stdout.strip() == "DIKE_DATA_DIR=/elsewhere"
    plan = make(["-n", "reproduce"], repo).stdout
    assert plan.index("dike data fetch --optional") < plan.index("dike data check") < plan.index("dike run")
    (tmp_path / "shared" / "data").mkdir(parents=True)         # the lab's layout: the copy beside the checkout is used
    assert make(["print-data-dir"], repo).stdout.strip() == f"DIKE_DATA_DIR={tmp_path / 'shared' / 'data'}"
