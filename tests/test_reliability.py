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


def test_data_check_catches_an_edit_that_keeps_size_and_mtime_and_verify_overrules_the_cache(tmp_path):
    "Same size, same mtime, one byte changed: caught; and `--verify` reads the bytes even when the cache vouches for them."
    import hashlib, json, os, sys
    from dike.data import manifest
    src = Path(os.environ.get("DIKE_DATA_DIR", ROOT.parent / "shared" / "data"))
    rel = "winogender/all_sentences.tsv"
    data = tmp_path / "data"; shutil.copytree(src / "winogender", data / "winogender")
    env = dict(os.environ, DIKE_DATA_DIR=str(data), DIKE_CACHE_DIR=str(tmp_path / "cache"))
    run = lambda *a: json.loads(subprocess.run([sys.executable, "-m", "dike.cli", "data", "check", "--json", *a], env=env,
                                               capture_output=True, text=True, timeout=300).stdout)["benchmarks"]["winogender"]
    ok = run()
    assert ok["verified"] == ok["files"] > 0 and not ok["corrupt"]
    f = data / rel; st = f.stat(); b = bytearray(f.read_bytes()); b[100] ^= 1
    f.write_bytes(bytes(b)); os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = f.stat()
    assert (st2.st_size, st2.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert [x["path"] for x in run()["corrupt"]] == [rel]                  # the cache keys on ctime too: caught
    key = f"sha256|{f.resolve()}|{st2.st_ino}|{st2.st_size}|{st2.st_mtime_ns}|{st2.st_ctime_ns}"
    (tmp_path / "cache" / "checksums" / hashlib.sha1(key.encode()).hexdigest()).write_text(manifest()[rel].sha256)
    assert not run()["corrupt"]                                            # a cache entry that lies is believed ...
    assert [x["path"] for x in run("--verify")["corrupt"]] == [rel]        # ... except by --verify
