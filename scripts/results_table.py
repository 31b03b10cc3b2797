"""Markdown table of runs/results/<row>/summary.json (written by vitfreeze_pretrain).
Usage: results_table.py ROOT [ROW...]: the named rows in that order, or every directory under ROOT.
A row without its summary.json is an error, not a gap in the table."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
names = sys.argv[2:] or sorted(d.name for d in root.iterdir() if d.is_dir())
missing = [n for n in names if not (root / n / "summary.json").exists()]
if missing or not names:
    sys.exit(f"results_table: no summary.json for {', '.join(missing) or 'any row'} under {root}")
print("| run | objective | schedule | pretrain s | linear probe top-1 | fine-tune top-1 | fine-tune top-5 |")
print("|---|---|---|---:|---:|---:|---:|")
for name in names:
    s = json.loads((root / name / "summary.json").read_text())
    sched = s["schedule"] if s["epochs"] > 0 else "-"
    if s["epochs"] > 0 and s["schedule"] != "none":
        sched += f" t0 {s['t0']} ({s['lr_mode']})"
    ft = lambda k: f"{100 * s[k]:.2f}" if k in s else "-"
    obj = s["objective"] if s["epochs"] > 0 else "random init"
    print(f"| {name} | {obj} | {sched} | {s['pretrain_seconds']:.0f} | {100 * s['probe_test_top1']:.2f} | "
          f"{ft('finetune_test_top1')} | {ft('finetune_test_top5')} |")
