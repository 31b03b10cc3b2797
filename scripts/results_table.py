"""Markdown table of runs/results/*/summary.json (written by vitfreeze_pretrain)."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
print("| run | objective | schedule | pretrain s | linear probe top-1 | fine-tune top-1 | fine-tune top-5 |")
print("|---|---|---|---:|---:|---:|---:|")
for d in sorted(root.iterdir()):
    f = d / "summary.json"
    if not f.exists():
        continue
    s = json.loads(f.read_text())
    sched = s["schedule"] if s["epochs"] > 0 else "-"
    if s["epochs"] > 0 and s["schedule"] != "none":
        sched += f" t0 {s['t0']} ({s['lr_mode']})"
    ft = lambda k: f"{100 * s[k]:.2f}" if k in s else "-"
    obj = s["objective"] if s["epochs"] > 0 else "random init"
    print(f"| {d.name} | {obj} | {sched} | {s['pretrain_seconds']:.0f} | {100 * s['probe_test_top1']:.2f} | "
          f"{ft('finetune_test_top1')} | {ft('finetune_test_top5')} |")
