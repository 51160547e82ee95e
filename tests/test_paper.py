"""The paper can not go stale: `dike paper check` (run by `make paper` before LaTeX) names what is missing."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check(tex: Path):
    return subprocess.run([sys.executable, "-m", "dike.cli", "paper", "check", str(tex)], capture_output=True, text=True,
                          cwd=ROOT)


def test_undefined_macro_and_missing_figure_fail_by_name(tmp_path):
    (tmp_path / "macros").mkdir()
    (tmp_path / "macros" / "g.tex").write_text("\\newcommand{\\DikeCrowsPairsDelta}{-1.2}\n")
    (tmp_path / "main.tex").write_text("$\\Delta=\\DikeCrowsPairsDelta$ % \\DikeOnlyInAComment\n")
    ok = check(tmp_path / "main.tex")
    assert ok.returncode == 0 and "1 generated macros used" in ok.stdout, ok.stderr
    (tmp_path / "main.tex").write_text("\\DikeCrowsPairsDelta and \\DikeNoGridMadeThis\n")
    bad = check(tmp_path / "main.tex")
    assert bad.returncode == 2 and "\\DikeNoGridMadeThis" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (tmp_path / "main.tex").write_text("\\includegraphics{figures/default/tradeoff}\n")
    bad = check(tmp_path / "main.tex")
    assert bad.returncode == 2 and "figures/default/tradeoff" in bad.stderr


def test_main_tex_names_no_number_by_hand():
    "Every number of the draft is a generated macro: no fallback definitions, no ?? placeholders."
    src = (ROOT / "paper" / "main.tex").read_text()
    assert "\\providecommand" not in src and "??" not in src
    assert src.count("\\Dike") >= 10
