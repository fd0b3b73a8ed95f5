"""How each number of a summary is computed, in words, for report.md and report.html.

These sentences are the contract the report makes with its reader; they describe what jobs/
computes per epoch (jobs.engine.metrics) and what the aggregation does with it (tables, compare).
"""

from __future__ import annotations

from runner.report.tables import Summary

OUTPUTS_WITHOUT_PROBABILITIES = ("tanh", "lecun_tanh", "linear")

METRICS: tuple[tuple[str, str], ...] = (
    ("final test accuracy", "fraction of test samples predicted correctly after the last epoch. "
     "The prediction is the argmax of the outputs, or, for strategies that learn their targets "
     "(tvo), the nearest target template: argmin_k mean((o - T_k)^2)."),
    ("test accuracy at the best validation epoch",
     "the test accuracy of the evaluated epoch with the highest validation accuracy (the first "
     "such epoch): tvo chooses epochs on validation, never on test."),
    ("acc AUC", "area under the test-accuracy curve over epochs (trapezoids between the "
     "evaluated epochs) divided by the number of epochs: 1 = perfect from the start."),
    ("epochs to threshold", "the first epoch at which validation accuracy reached the "
     "threshold (chosen on validation, never on test); the median over the seeds that reached "
     "it, with reached/seeds."),
    ("final training loss", "the training loss of the last epoch, a running mean over its "
     "batches, against the strategy's targets."),
    ("confidence", "mean over test samples of max_k cos(o, T_k), the cosine between the output "
     "activations o and the closest current target template T_k (row k of the strategy's "
     "targets). Defined for every output activation."),
    ("margin", "mean over test samples of the largest minus the second-largest output "
     "activation, in the output's own units (probabilities for softmax and sigmoid, [-1, 1] for "
     "tanh, [-1.7159, 1.7159] for lecun_tanh, unbounded for linear): compare margins between "
     "groups with the same output only."),
    ("ECE (softmax)", "expected calibration error of the top-class probability: with the "
     "confidence p_max = max_k p_k of each test sample in 10 equal-width bins "
     "((0, 0.1], ..., (0.9, 1]), ECE = sum_b n_b/N |acc_b - conf_b|, acc_b the fraction of the "
     "bin's samples predicted correctly and conf_b their mean p_max."),
    ("ECE (sigmoid)", "one-vs-rest: each of the K sigmoid outputs is a binary probability p_ik "
     "that sample i is of class k. All N*K of them go into the same 10 equal-width bins, against "
     "the outcome 1[y_i = k]: ECE = sum_b n_b/(N K) |freq_b - conf_b|, freq_b the fraction of "
     "the bin's pairs with y_i = k and conf_b their mean p_ik. Outputs are never divided by "
     "their sum."),
    ("NLL (softmax)", "test negative log-likelihood -1/N sum_i log p_{i,y_i} (probabilities "
     "clamped at 1e-12)."),
    ("NLL (sigmoid)", "one-vs-rest: mean over test samples of the sum over classes of the binary "
     "log loss, -1/N sum_i sum_k [1[y_i = k] log p_ik + (1 - 1[y_i = k]) log(1 - p_ik)]."),
    ("reliability diagram", "the calibration plot: per group, the 10 ECE bins above of each "
     "seed's final epoch, pooled over the seeds (counts summed; mean confidence and accuracy "
     "weighted by the counts). Each non-empty bin is a point at its mean confidence (x) and its "
     "accuracy (y): for softmax the fraction of the bin's samples predicted correctly, for "
     "sigmoid the fraction of its (sample, class) pairs with y_i = k. On the dotted diagonal a "
     "group is perfectly calibrated; below it, overconfident. Empty bins are not drawn; groups "
     "without bins (no probabilities, or metrics written before tvo recorded them) are left out. "
     "The ECE beside each panel is the group's mean final ECE over seeds, as in the tables."),
    ("ECE and NLL (tanh, lecun_tanh, linear)", "not applicable (n/a): these outputs are no "
     "probabilities. Such groups have no ECE or NLL in any table, file (empty cells) or plot, "
     "and are left out of the calibration plot."),
)


def statistics_text(summary: Summary) -> list[str]:
    """The statistics of the tables and of the comparison, as sentences."""
    compared = [row for row in summary.rows if row["test"] is not None]
    finite = [row for row in compared if row["p_value"] == row["p_value"]]
    return [
        "Each cell of the tables is the mean over the done seeds of a group ± the half-width of "
        "its 95 % confidence interval (Student's t, n − 1 degrees of freedom; no interval below "
        "two seeds).",
        "Δ is group − baseline in final test accuracy. Where the seeds of the two groups pair up "
        "(same seed, and a difference that leaves the data and its order alone: not the data "
        "set, its noise, the validation split or the batch size), the comparison is a paired "
        "t-test over the seeds both groups finished (scipy.stats.ttest_rel; Δ and its CI are "
        "those of the paired differences). "
        "Otherwise it is Welch's t-test (scipy.stats.ttest_ind, equal_var=False; Δ is the "
        "difference of the group means with the Welch–Satterthwaite CI). The column *test* says "
        "which, with the number of pairs.",
        f"p (Holm): the p-values of all {len(finite)} comparisons with the baseline in this "
        "summary, corrected together by Holm's step-down method (statsmodels.stats.multitest."
        "multipletests, method=\"holm\"), which keeps the family-wise error rate at 5 %. "
        "`*` marks Holm-corrected p < 0.05; raw p-values are shown for reference only.",
    ]
