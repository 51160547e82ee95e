"""The committed archive end to end on a tiny grid: archived runs count as finished with results/ deleted, the products
regenerate identically from the archive alone, a changed byte is named, and rekey keeps only what the current code
reproduces."""
import dataclasses, json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIKE = [sys.executable, "-m", "dike.cli"]
GRID = """name: arch
defaults: {n_boot: 50, limit: 8}
experiments:
  - models: [tiny-llama]
    compress: [none, "magnitude:0.5"]
    benchmarks: [crows_pairs]
"""


@pytest.fixture
def env(tmp_path, data_dir):
    return dict(os.environ, DIKE_RESULTS_DIR=str(tmp_path / "results"), DIKE_ARCHIVE_DIR=str(tmp_path / "archive"),
                DIKE_DATA_DIR=str(data_dir), DIKE_THREADS="1", OMP_NUM_THREADS="1")


def dike(args, env):
    return subprocess.run(DIKE + args, env=env, cwd=ROOT, capture_output=True, text=True)


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def products(results: Path) -> dict:
    "The macros and LaTeX tables of the grid (the text the paper reads), by path."
    d = results / "grids" / "arch"
    return {p.relative_to(d).as_posix(): p.read_text() for p in sorted(d.rglob("*.tex"))}


def test_archive_round_trip(tmp_path, env):
    g = tmp_path / "arch.yaml"; g.write_text(GRID)
    res = tmp_path / "results"
    ok(dike(["run", str(g)], env))
    ok(dike(["figures", str(g)], env))
    before = products(res)
    assert "macros.tex" in before and any(k.startswith("tables/") for k in before)
    assert "2 run(s) archived" in ok(dike(["archive", "add", str(g)], env))
    shutil.rmtree(res)                                              # a fresh clone: the archive only
    assert "2 done, 0 to run" in ok(dike(["run", str(g), "--dry-run"], env))
    ok(dike(["figures", str(g)], env))
    after = products(res)
    assert after == before, [k for k in before if before[k] != after.get(k)]
    st = ok(dike(["archive", "status", str(g)], env))
    assert "arch" in st and " 2 " in st.splitlines()[2]
    assert "0 problem(s)" in ok(dike(["archive", "verify", str(g)], env))
    # one byte of an archived item table
    obj = sorted((tmp_path / "archive" / "objects").rglob("*.parquet"))[0]
    b = bytearray(obj.read_bytes()); b[len(b) // 3] ^= 0x01; obj.write_bytes(bytes(b))
    r = dike(["archive", "verify", str(g)], env)
    assert r.returncode == 1 and str(obj) in r.stdout and "1 problem(s)" in r.stdout, r.stdout + r.stderr


def test_rekey_keeps_only_what_the_current_code_reproduces(tmp_path, env, monkeypatch):
    g = tmp_path / "arch.yaml"; g.write_text(GRID)
    ok(dike(["run", str(g)], env))
    ok(dike(["archive", "add", str(g)], env))
    for k, v in env.items(): monkeypatch.setenv(k, v)
    from dike.archive import Archive, grid_state
    from dike.runner import load_grid
    from dike.rekey import rekey
    ar, grid = Archive(tmp_path / "archive"), load_grid(g, validate=False)
    base, comp = (next(c for c in grid.runs if c["compress"] == s) for s in ("none", "magnitude:0.5"))
    def make_stale(c, old_id, shift):
        "Pretend `c` was archived by older code (another code key) with its scores moved by `shift`."
        run = ar.unpack(c["run_id"], tmp_path / "old"); d = tmp_path / "old" / old_id; run.rename(d)
        cfg = json.loads((d / "config.json").read_text()) | {"run_id": old_id, "code_key": "0" * 16}
        (d / "config.json").write_text(json.dumps(cfg))
        it = pd.read_parquet(d / "crows_pairs" / "items.parquet"); it["score_more"] += shift
        it.to_parquet(d / "crows_pairs" / "items.parquet", index=False)
        ar.add(d); ar.remove(c["run_id"])
    make_stale(base, "a" * 16, 0.0)
    make_stale(comp, "b" * 16, 0.01)
    st = grid_state(ar, grid)
    assert (st["archived"], sorted(o for _, olds in st["stale"] for o in olds)) == ([], ["a" * 16, "b" * 16])
    out = {r["old"]: r for r in rekey(grid, ar, sample=5, progress=False)}
    assert out["a" * 16]["verdict"] == "kept", out
    assert out["a" * 16]["max_diff"] <= 1e-6
    assert out["b" * 16]["verdict"] == "recompute" and out["b" * 16]["max_diff"] > 1e-6
    assert sorted(ar.ids()) == sorted([base["run_id"], "b" * 16])
    assert ar.records[base["run_id"]]["rekeyed_from"]["run_id"] == "a" * 16
    assert ar.records[base["run_id"]]["config"]["code_key"] == base["code_key"]


def test_the_committed_archive_verifies_and_rebuilds_the_paper(tmp_path, data_dir):
    """CI: every archived table and file of archive/ matches its checksum and content hash (joins included), and every
    paper grid whose runs are all archived regenerates, from the archive alone (empty results/, no model loaded), the
    macros and LaTeX tables committed in paper/."""
    env = {k: v for k, v in os.environ.items() if k not in ("DIKE_ARCHIVE_DIR", "DIKE_ARCHIVE")}
    env.update(DIKE_DATA_DIR=str(data_dir), DIKE_RESULTS_DIR=str(tmp_path / "results"), DIKE_THREADS="1",
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = ok(dike(["archive", "verify"], env))
    assert " 0 problem(s)" in out, out
    paper = tmp_path / "paper"
    shutil.copytree(ROOT / "paper", paper, ignore=shutil.ignore_patterns("*.pdf", "*.aux", "*.log"))
    out = ok(dike(["paper", "build", "--paper", str(paper)], env))
    built = out.strip().splitlines()[-1].split("rebuilt: ")[1].split(";")[0].split(", ")
    assert {"default", "origins"} <= set(built), out    # the main grid and the origins study are fully archived
    for g in built:
        new = {p.relative_to(paper).as_posix(): p.read_text() for p in [paper / "macros" / f"{g}.tex",
                                                                       *sorted((paper / "tables" / g).glob("*.tex"))]}
        old = {k: (ROOT / "paper" / k).read_text() if (ROOT / "paper" / k).is_file() else None for k in new}
        assert new == old, f"{g}: regenerated from the archive but differs from paper/: " \
                           f"{[k for k in new if new[k] != old[k]]} (run `make paper` and commit)"


def test_a_study_resumes_from_the_archive(tmp_path, env):
    "An origins sweep archived with `dike archive add STUDY`: on a machine with empty results it is unpacked, not recomputed."
    f = tmp_path / "study.yaml"
    f.write_text("name: t\nsweeps:\n  - {model: tiny-llama, spec: 'rtn:4', benchmarks: [crows_pairs], limit: {crows_pairs: 8},"
                 " bands: 2, families: [whole, band], n_boot: 50}\n")
    ok(dike(["origins", str(f)], env))
    sweep = tmp_path / "results" / "origins" / "tiny-llama__rtn_4"
    before = {p.relative_to(sweep).as_posix(): p.read_bytes() for p in sorted(sweep.rglob("*.parquet"))}
    assert any(k.startswith("items/base/") for k in before) and sum(k.startswith("cells/") for k in before) == 3
    assert "origins/tiny-llama__rtn_4: " in ok(dike(["archive", "add", str(f)], env))
    shutil.rmtree(tmp_path / "results")
    out = ok(dike(["origins", str(f)], env))
    assert "from the archive: origins/tiny-llama__rtn_4" in out, out
    assert "[1/3]" not in out                                         # no cell was computed again
    after = pd.read_parquet(sweep / "origins.parquet")
    assert after.equals(pd.read_parquet(pd.io.common.BytesIO(before["origins.parquet"])))


def test_recompute_check_recompresses_and_rescores_archived_runs(tmp_path, env, monkeypatch):
    "archive verify --recompute (issue 33): archived current runs reproduce from code and data; a scorer that drifts is caught."
    g = tmp_path / "arch.yaml"; g.write_text(GRID)
    ok(dike(["run", str(g)], env))
    ok(dike(["archive", "add", str(g)], env))
    for k, v in env.items(): monkeypatch.setenv(k, v)
    from dike.archive import Archive
    from dike.runner import load_grid
    from dike.rekey import recompute_check
    import dike.evaluate as E
    ar, grid = Archive(tmp_path / "archive"), load_grid(g, validate=False)
    res = recompute_check([grid], ar, runs=10, sample=5, progress=False)
    assert len(res) == len(ar.ids()) and all(r["ok"] and r["first_difference"] == "" for r in res), res
    import dike.compress.apply as A                     # weights that differ are named before the items they move
    digest = A.weight_digest
    monkeypatch.setattr(A, "weight_digest", lambda m: {**digest(m), "extra": "x"})
    res = recompute_check([grid], ar, runs=10, sample=5, progress=False)
    assert [r["first_difference"] for r in res] == ["weights"] * len(res) and not any(r["ok"] for r in res)
    monkeypatch.setattr(A, "weight_digest", digest)
    b = E.get_benchmark("crows_pairs")
    drift = lambda *a, **k: (lambda d: d.assign(score_more=d.score_more + 1e-3))(b.score(*a, **k))
    monkeypatch.setitem(E.BENCHMARKS, "crows_pairs", dataclasses.replace(b, score=drift))
    res = recompute_check([grid], ar, runs=10, sample=5, progress=False)
    assert not any(r["ok"] for r in res if r["benchmark"] == "crows_pairs")
    assert {r["first_difference"] for r in res if r["benchmark"] == "crows_pairs"} == {"items"}   # same weights, other scores
