"""Tables of runs/freeze_tradeoff/seed<N>/<row>/summary.json (scripts/freeze_tradeoff.sh): per seed, and
over the seeds each schedule's paired difference from the no-freezing run of the same seed, as mean,
standard deviation and 95 % confidence interval of the mean (Student t, n - 1 degrees of freedom).
Usage: freeze_tradeoff_table.py [ROOT] [--require SEED...] [--rows ROW...]: with --require, every
(seed, row) pair of those seeds and rows (default: all rows) must have its summary, else it fails."""
import argparse, json, math, pathlib, statistics, sys

ROWS = ["none", "cubic0.8", "linear0.5", "vittail"]
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: 2.0 is within 2 %).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ci(xs):
    """'mean ± SD (lo to hi)' with the 95 % t-interval of the mean; one value alone has no spread."""
    if len(xs) < 2:
        return f"{xs[0]:+.2f} (one seed)"
    m, sd = statistics.mean(xs), statistics.stdev(xs)
    half = (T975[len(xs) - 2] if len(xs) <= 31 else 2.0) * sd / math.sqrt(len(xs))
    return f"{m:+.2f} ± {sd:.2f} ({m - half:+.2f} to {m + half:+.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", nargs="?", default="runs/freeze_tradeoff", type=pathlib.Path)
    ap.add_argument("--require", nargs="*", type=int, default=[], help="seeds that must be complete")
    ap.add_argument("--rows", nargs="*", default=ROWS, help="rows those seeds must have")
    args = ap.parse_args()
    runs = {}  # (seed, row) -> summary
    for f in sorted(args.root.glob("seed*/*/summary.json")):
        runs[(int(f.parent.parent.name[4:]), f.parent.name)] = json.loads(f.read_text())
    missing = [f"seed{s}/{r}" for s in args.require for r in args.rows if (s, r) not in runs]
    if missing:
        sys.exit(f"freeze_tradeoff_table: no summary.json for {', '.join(missing)} under {args.root}")
    seeds = sorted({s for s, _ in runs})

    def value(s, key):
        return s[key] if key == "pretrain_seconds" else 100 * s[key]

    metrics = {"pretrain_seconds": "pretrain s", "probe_test_top1": "probe top-1", "finetune_test_top1": "fine-tune top-1"}
    print("| seed | row | " + " | ".join(metrics.values()) + " |")
    print("|---|---|" + "---:|" * len(metrics))
    for seed in seeds:
        for row in ROWS:
            if (seed, row) in runs:
                s = runs[(seed, row)]
                print(f"| {seed} | {row} | " + " | ".join(f"{value(s, k):.2f}" for k in metrics) + " |")

    print()
    print("Paired changes against no freezing of the same seed: mean ± SD (95 % confidence interval of the mean)")
    print("| row | seeds | time saved % | probe top-1 change | fine-tune top-1 change |")
    print("|---|---:|---:|---:|---:|")
    for row in ROWS[1:]:
        paired = [s for s in seeds if (s, row) in runs and (s, "none") in runs]
        if not paired:
            continue
        base = lambda s, k: value(runs[(s, "none")], k)
        saved = [100 * (1 - value(runs[(s, row)], "pretrain_seconds") / base(s, "pretrain_seconds")) for s in paired]
        dprobe = [value(runs[(s, row)], "probe_test_top1") - base(s, "probe_test_top1") for s in paired]
        dft = [value(runs[(s, row)], "finetune_test_top1") - base(s, "finetune_test_top1") for s in paired]
        print(f"| {row} | {len(paired)} | {mean_ci(saved)} | {mean_ci(dprobe)} | {mean_ci(dft)} |")


if __name__ == "__main__":
    main()
