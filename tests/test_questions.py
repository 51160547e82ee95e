"""A grid's questions (its hypothesis families) and power declaration: checked against the runs it holds before any
run starts, and the power report of `dike run --dry-run` agrees with `dike.inference.mde_mcnemar`."""
from pathlib import Path
import pytest
from dike.core import ConfigError
from dike.inference import mde_mcnemar
from dike.runner import load_grid

ROOT = Path(__file__).resolve().parents[1]
HEAD = """name: q
defaults: {n_boot: 50, limit: 40}
experiments:
  - models: [tiny-llama]
    compress: [none, "magnitude:0.5"]
    benchmarks: [crows_pairs]
"""


def grid(tmp_path, extra: str):
    p = tmp_path / "q.yaml"; p.write_text(HEAD + extra)
    return load_grid(p, validate=False)


def test_questions_are_read_and_default_to_distance(tmp_path, data_dir):
    g = grid(tmp_path, "questions:\n  - {name: c, text: does it move, specs: ['magnitude:0.5']}\n")
    assert g.questions == [{"name": "c", "text": "does it move", "kinds": ["effect"], "specs": ["magnitude:0.5"],
                            "benchmarks": [], "test": "distance"}]


@pytest.mark.parametrize("body, msg", [
    ("questions:\n  - {name: c, specs: ['wanda:0.5']}\n", "specs ['wanda:0.5'] are not run by this grid"),
    ("questions:\n  - {name: c, benchmarks: [stereoset]}\n", "benchmarks ['stereoset'] are not run by this grid"),
    ("questions:\n  - {name: c}\n  - {name: c}\n", "`name` must be a new non-empty string"),
    ("questions:\n  - {name: c, kinds: [effects]}\n", "unknown kind(s) ['effects']"),
    ("questions:\n  - {name: c, test: sign}\n", "`test` must be distance or signed"),
    ("questions:\n  - {name: c, family: x}\n", "unknown key(s) 'family'"),
    ("power: {effect: -1}\n", "power.effect: got -1"),
    ("power: {effect: 5, benchmarks: [bbq]}\n", "power.benchmarks: ['bbq'] are not run by this grid"),
])
def test_bad_questions_fail_naming_the_field(tmp_path, data_dir, body, msg):
    with pytest.raises(ConfigError, match=None) as e:
        grid(tmp_path, body)
    assert msg in str(e.value) and "q.yaml" in str(e.value), str(e.value)


def test_power_report_matches_mde_mcnemar(tmp_path, data_dir):
    from dike.runner import power_report
    g = grid(tmp_path, "power: {effect: 20, discordance: 0.3, m: 4}\n")
    (r,) = power_report(g)
    assert (r["benchmark"], r["n"]) == ("crows_pairs", 40)
    assert r["mde_points"] == pytest.approx(100 * mde_mcnemar(40, 0.3, 0.05 / 4))
    assert r["reaches"] == (r["mde_points"] <= 20)
    g2 = grid(tmp_path, "power: {effect: 1}\n")
    assert power_report(g2)[0]["reaches"] is False          # 40 pairs cannot see 1 point


def test_default_grid_declares_its_questions_and_power(data_dir):
    g = load_grid(ROOT / "experiments" / "grids" / "default.yaml", validate=False)
    assert [q["name"] for q in g.questions] == ["compression", "nulls"] and g.nulls["magnitude:0.5"][0] == "noise:2.63"
    assert g.power["benchmarks"] == ["crows_pairs"] and g.power["m"] >= 1
