"""How each number of a summary is computed, in words, for report.md and report.html.

These sentences are the contract the report makes with its reader; they describe what jobs/
computes per epoch (jobs.engine.metrics) and what the aggregation does with it (tables, compare).
Each metric's definitions are declared with it, in jobs.metric_catalogue.
"""

from __future__ import annotations

from jobs import metric_catalogue
from runner.report.contents import Contents

OUTPUTS_WITHOUT_PROBABILITIES = ("tanh", "lecun_tanh", "linear")

# what no metric declares: the outputs without probabilities have no calibration
NOT_APPLICABLE_TEXT = (
    "ECE and NLL (tanh, lecun_tanh, linear)", "not applicable (n/a): these outputs are no "
    "probabilities. Such groups have no ECE or NLL in any table, file (empty cells) or plot, "
    "and are left out of the calibration plot.")


def metric_definitions() -> list[tuple[str, str]]:
    """(term, text) of every number and plot of the report: as the metrics declare them
    (jobs.metric_catalogue), then what applies to outputs without probabilities."""
    return [*metric_catalogue.definitions(), NOT_APPLICABLE_TEXT]


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
