"""Markdown tables of a run: figures per target, then Outpost's ratio to each anchor."""

import statistics

OUTPOST = "outpost"
# Metrics where a larger figure is better. For every other metric a smaller one is better.
HIGHER_IS_BETTER = {"MB/s", "req/s", "hit ratio", "byte hit ratio", "hit MB/s"}
# Counts that describe a run rather than rate it, left out of the ratio tables.
UNRATED = {"hits compared", "downloads", "evictions", "evicted MiB"}


def _ordered_unique(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _format_number(value):
    if float(value).is_integer() and abs(value) < 100:
        return f"{value:.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _format_spread(values):
    median = statistics.median(values)
    if len(values) == 1:
        return _format_number(median)
    return f"{_format_number(median)} ({_format_number(min(values))}-{_format_number(max(values))})"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scenario_tables(scenario, samples):
    """Return Markdown for one scenario: a figures table and a ratio table."""
    samples = [sample for sample in samples if sample.scenario == scenario]
    cases = _ordered_unique(sample.case for sample in samples)
    targets = _ordered_unique(sample.target for sample in samples)
    metrics = _ordered_unique(metric for sample in samples for metric in sample.figures)

    def values(case, target, metric):
        return [sample.figures[metric] for sample in samples
                if sample.case == case and sample.target == target and metric in sample.figures]

    figure_rows = []
    for case in cases:
        for target in targets:
            if not any(values(case, target, metric) for metric in metrics):
                continue
            cells = [case, target]
            for metric in metrics:
                found = values(case, target, metric)
                cells.append(_format_spread(found) if found else "n/a")
            figure_rows.append(cells)

    rated = [metric for metric in metrics if metric not in UNRATED]
    ratio_rows = []
    for case in cases:
        for anchor in targets:
            if anchor == OUTPOST or not any(values(case, anchor, metric) for metric in rated):
                continue
            cells = [case, anchor]
            for metric in rated:
                ours = values(case, OUTPOST, metric)
                theirs = values(case, anchor, metric)
                if not ours or not theirs or statistics.median(theirs) == 0:
                    cells.append("n/a")
                else:
                    ratio = statistics.median(ours) / statistics.median(theirs)
                    cells.append(f"{ratio:.2f}")
            ratio_rows.append(cells)

    better = ", ".join(
        f"{metric} {'higher' if metric in HIGHER_IS_BETTER else 'lower'}" for metric in rated)
    text = f"### {scenario}\n\n"
    text += "Median of the repetitions, with (min-max) when there are several.\n\n"
    text += _table(["case", "target"] + metrics, figure_rows) + "\n"
    if ratio_rows:
        text += f"\nOutpost's median divided by the anchor's median. Better is: {better}.\n\n"
        text += _table(["case", "anchor"] + [f"{metric} ratio" for metric in rated],
                       ratio_rows) + "\n"
    return text


def full_report(header_lines, scenarios, samples):
    """Return the whole Markdown report: the run description, then one section per scenario."""
    parts = ["\n".join(header_lines) + "\n"]
    for scenario in scenarios:
        parts.append(scenario_tables(scenario, samples))
    return "\n".join(parts)
