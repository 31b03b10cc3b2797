"""Tables of runs/freeze_tradeoff/seed<N>/<row>/summary.json (scripts/freeze_tradeoff.sh): per seed, and
the mean over seeds of each schedule's paired difference from the no-freezing run of the same seed."""
import json, pathlib, statistics, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/freeze_tradeoff")
rows = ["none", "cubic0.8", "linear0.5", "vittail"]
metrics = {"pretrain_seconds": "pretrain s", "probe_test_top1": "probe top-1",
           "finetune_test_top1": "fine-tune top-1"}
runs = {}  # (seed, row) -> summary
for f in sorted(root.glob("seed*/*/summary.json")):
    runs[(int(f.parent.parent.name[4:]), f.parent.name)] = json.loads(f.read_text())
seeds = sorted({s for s, _ in runs})

def value(s, key):
    return s[key] if key == "pretrain_seconds" else 100 * s[key]

print("| seed | row | " + " | ".join(metrics.values()) + " |")
print("|---|---|" + "---:|" * len(metrics))
for seed in seeds:
    for row in rows:
        if (seed, row) in runs:
            s = runs[(seed, row)]
            print(f"| {seed} | {row} | " + " | ".join(f"{value(s, k):.2f}" for k in metrics) + " |")

def mean_sd(xs):
    return f"{statistics.mean(xs):+.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:+.2f}"

print()
print("| row | seeds | time saved % | probe top-1 change | fine-tune top-1 change |")
print("|---|---:|---:|---:|---:|")
for row in rows[1:]:
    paired = [s for s in seeds if (s, row) in runs and (s, "none") in runs]
    if not paired:
        continue
    base = lambda s, k: value(runs[(s, "none")], k)
    saved = [100 * (1 - value(runs[(s, row)], "pretrain_seconds") / base(s, "pretrain_seconds")) for s in paired]
    dprobe = [value(runs[(s, row)], "probe_test_top1") - base(s, "probe_test_top1") for s in paired]
    dft = [value(runs[(s, row)], "finetune_test_top1") - base(s, "finetune_test_top1") for s in paired]
    print(f"| {row} | {len(paired)} | {mean_sd(saved)} | {mean_sd(dprobe)} | {mean_sd(dft)} |")
