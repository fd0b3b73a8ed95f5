"""`tvo aggregate DIR --format latex` and summary.tex: the exact booktabs text."""

from __future__ import annotations

from typer.testing import CliRunner

from runner.cli.app import app
from runner.report.latex import escape, results_table
from runner.report.load import load_grid
from runner.report.summary import summarise
from tests.test_aggregate import build_grid

EXPECTED = r"""% tvo aggregate: grid fake; made by tvo aggregate grid
% mean $\pm$ half-width of the 95 % CI over seeds; bold: best of each column within its block of equal settings (groups of two seeds or more)
% Delta and p against strategy=onehot with otherwise equal settings (paired t-test where seeds pair up, else Welch); p Holm-corrected over all comparisons; * p < 0.05, ** p < 0.01, *** p < 0.001
% needs \usepackage{booktabs}
\begin{tabular}{lrrrrrr}
\toprule
strategy & seeds & final acc. & $\Delta$ acc. & $p$ (Holm) & NLL & ECE \\
\midrule
onehot & 3 & 0.9200 $\pm$ 0.0497 & baseline &  & 1.080 $\pm$ 0.050 & \textbf{0.050 $\pm$ 0.000} \\
fixed & 3 & \textbf{0.9600 $\pm$ 0.0248}$^{*}$ & +0.0400 & 0.020 & \textbf{1.040 $\pm$ 0.025} & \textbf{0.050 $\pm$ 0.000} \\
\bottomrule
\end{tabular}
"""  # noqa: E501 - the table's lines are as long as LaTeX writes them


def test_latex_table_is_booktabs_with_ci_bold_best_and_holm_marks(tmp_path):
    summary = summarise(load_grid(build_grid(tmp_path)))
    assert results_table(summary, grid="fake", command="tvo aggregate grid") == EXPECTED


def test_format_latex_prints_what_summary_tex_holds(tmp_path):
    root = build_grid(tmp_path)
    result = CliRunner().invoke(app, ["aggregate", str(root), "--format", "latex",
                                      "--no-plots"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (root / "summary" / "summary.tex").read_text()
    assert result.stdout.splitlines()[4:] == EXPECTED.splitlines()[4:]
    assert "10 jobs" not in result.stdout and "6 jobs: 6 done" in result.stderr


def test_latex_special_characters_are_escaped():
    assert escape("label_smoothing(eps=0.1)") == r"label\_smoothing(eps=0.1)"
    assert escape("50% & #1 {a} $x$ ~ ^ \\") == (
        r"50\% \& \#1 \{a\} \$x\$ \textasciitilde{} \textasciicircum{} \textbackslash{}")
