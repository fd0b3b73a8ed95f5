"""How each number of a summary is computed, in words, for report.md and report.html.

These sentences are the contract the report makes with its reader; they describe what jobs/
computes per epoch (jobs.engine.metrics) and what the aggregation does with it (tables, compare).
"""

from __future__ import annotations

from runner.report.contents import Contents

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
    ("epochs to threshold", "the first epoch at which validation accuracy (never test "
     "accuracy) reached the threshold (--threshold); the median over the seeds that reached "
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


def statistics_text(contents: Contents) -> list[str]:
    """The statistics of the tables and of the comparison, as sentences."""
    from runner.report.bootstrap import RESAMPLES

    summary = contents.summary
    family = {row["group"] if row["identical_to"] is None else row["identical_to"]
              for row in summary.rows if row["p_value"] == row["p_value"]}
    texts = [
        "Each cell of the tables is the mean over the done seeds of a group ± the half-width of "
        "its 95 % confidence interval (Student's t, n − 1 degrees of freedom; no interval below "
        "two seeds). *seeds* counts distinct seeds; a group that pools other settings (`--by`) "
        "says how many runs it holds besides.",
        f"Bootstrap (scipy.stats.bootstrap, percentile intervals of {RESAMPLES} resamples, "
        "seeded): the 95 % CI of the mean final test accuracy (`final_test_acc_boot_*` in the "
        "files) and the interquartile mean (IQM: the mean of the middle half of the runs, "
        "scipy.stats.trim_mean(x, 0.25)) with its CI. These follow Agarwal et al. 2021 (rliable); "
        "rliable itself is not used, as it would add arch, seaborn and pandas to every "
        "aggregation: its definitions are computed with scipy.",
        "Δ is group − baseline in final test accuracy. Runs pair up when they agree on every "
        "setting but the compared one, the seed included (same seed: same initialisation, data "
        "order and dropout), so a group that pools several learning rates is paired rate by "
        "rate. Paired groups are compared by a paired t-test over the runs that pair up "
        "(scipy.stats.ttest_rel; Δ and its CI are those of the paired differences); runs "
        "without a partner are left out and counted in *note*. Where runs cannot pair (the "
        "compared setting changes the data or its order: data set, noise, validation split, "
        "batch size; or fewer than two share their seed) and both groups hold runs of the same "
        "other settings, the test is Welch's (scipy.stats.ttest_ind, equal_var=False; Δ is the "
        "difference of the means with the Welch–Satterthwaite CI). Otherwise the groups are not "
        "compared, and *note* says why.",
        "P(group > baseline): the probability of improvement (Agarwal et al. 2021; Bouthillier "
        "et al. 2021), ties counting one half. Paired: the share of pairs the group wins, its "
        "95 % CI from resampling pairs; unpaired: over every combination of one run of each "
        "(the Mann–Whitney U statistic over n·m), each side resampled on its own.",
        (f"p (Holm): the p-values of the {len(family)} distinct comparison"
         f"{'' if len(family) == 1 else 's'} with the baseline in this summary, corrected "
         "together by Holm's step-down method (statsmodels.stats.multitest.multipletests, "
         "method=\"holm\"), which keeps the family-wise error rate at 5 %. `*` marks "
         "Holm-corrected p < 0.05; raw p-values are shown for reference only." if family else
         "p (Holm): Holm's step-down method (statsmodels.stats.multitest.multipletests, "
         "method=\"holm\") corrects the p-values of all comparisons with the baseline "
         "together; here none has a p-value (fewer than two seeds on a side, or no "
         "baseline), so there is no family to correct."),
        "Identical groups: every done run's metrics (each epoch's losses, accuracies, NLL, ECE, "
        "confidence and margin; timings left out) are hashed; groups whose runs match one to "
        "one, bit for bit, are one result: they share a single test in Holm's family, are drawn "
        "once (their names joined by `=` in the legends) and are listed under the comparison.",
    ]
    if contents.tasks is not None:
        texts.append(
            "Across tasks (data sets or architectures): the IQM of all runs of all tasks and "
            "P(method > baseline) averaged over tasks (each task's unpaired estimate), with 95 % "
            "CIs from a stratified bootstrap (runs resampled within each task: scipy's "
            "bootstrap over one sample per task); performance profiles: the fraction of runs "
            "above each score, tasks weighted equally, with pointwise 95 % bands.")
    if contents.protocol is not None:
        from runner.grid.protocol import TIE_RULE

        texts.append(f"Selection (stage 1): on the final validation score only; {TIE_RULE}. "
                     "The tuning runs (one seed each) never enter the tables, tests or plots "
                     "of the final runs, and the final seeds are fresh (never the tuning "
                     "seed).")
    return texts
