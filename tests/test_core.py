"""Fault injection on the core helpers: a killed writer leaves nothing visible, a finished result is never replaced."""
import os, signal, subprocess, sys, textwrap, json
import pytest
from dike.core import atomic_dir, write_json, config_hash


def test_kill_during_atomic_dir_leaves_no_partial_result(tmp_path):
    # a child process writes half a result inside atomic_dir and is SIGKILLed before the block ends
    code = textwrap.dedent(f"""
        import os, time
        from dike.core import atomic_dir
        with atomic_dir({str(tmp_path / 'run')!r}) as t:
            (t / 'items.parquet').write_text('half')
            open({str(tmp_path / 'ready')!r}, 'w').close()
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if (tmp_path / "ready").exists(): break
        import time; time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert not (tmp_path / "run").exists()          # the partial run is not visible under its final name
    with atomic_dir(tmp_path / "run") as t:          # and the rerun completes
        (t / "x").write_text("ok")
    assert (tmp_path / "run" / "x").read_text() == "ok"


def test_finished_result_is_not_overwritten(tmp_path):
    with atomic_dir(tmp_path / "r") as t: write_json(t / "m.json", {"v": 1})
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "r") as t: write_json(t / "m.json", {"v": 2})
    assert json.loads((tmp_path / "r" / "m.json").read_text()) == {"v": 1}


def test_config_hash_ignores_key_order():
    assert config_hash({"model": "m", "spec": None, "seed": 0}) == config_hash({"seed": 0, "spec": None, "model": "m"})


def test_atomic_write_gives_normal_permissions(tmp_path):
    "mkstemp creates 0600 files; an atomically written result must be as readable as one written with open()."
    import os
    from dike.core import atomic_write
    ref = tmp_path / "ref.txt"; ref.write_text("x")
    got = atomic_write(tmp_path / "got.txt", "x")
    assert oct(os.stat(got).st_mode & 0o777) == oct(os.stat(ref).st_mode & 0o777)
