"""Markdown table of runs/results_methods/<row>-s<seed>/summary.json (scripts/results_methods.sh):
one line per row with the mean and standard deviation over its seeds (sample SD, n - 1) of the
pretraining time, linear-probe top-1 and fine-tune top-1, then the LoMaR/MAE pretraining-time ratio
at each image size that has both rows.
Usage: results_methods_table.py ROOT NAME... (NAME = <row>-s<seed>); a missing summary is an error."""
import json, pathlib, statistics, sys

root = pathlib.Path(sys.argv[1])
names = sys.argv[2:]
missing = [n for n in names if not (root / n / "summary.json").exists()]
if missing or not names:
    sys.exit(f"results_methods_table: no summary.json for {', '.join(missing) or 'any row'} under {root}")
rows = {}
for name in names:
    row = name.rsplit("-s", 1)[0]
    rows.setdefault(row, []).append(json.loads((root / name / "summary.json").read_text()))


def stat(values, scale=1.0, digits=2):
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


print("| row | objective | image / patch | seeds | pretrain s | linear probe top-1 | fine-tune top-1 |")
print("|---|---|---|---:|---:|---:|---:|")
for row, runs in rows.items():
    s = runs[0]
    ft = [r["finetune_test_top1"] for r in runs if "finetune_test_top1" in r]
    ft_image = s.get("finetune_image", s.get("image", 28))
    geometry = f"{s.get('image', 28)} / {s.get('patch', 4)}" + (f", fine-tuned at {ft_image}" if ft_image != s.get("image", 28) else "")
    print(f"| {row} | {s['objective']} | {geometry} | {len(runs)} | {stat([r['pretrain_seconds'] for r in runs], digits=0)} | "
          f"{stat([r['probe_test_top1'] for r in runs], 100)} | {stat(ft, 100) if ft else '-'} |")
for size in ("28p4", "56p4", "28p2", "56p2"):
    mae, lomar = rows.get(f"mae-{size}"), rows.get(f"lomar-{size}")
    if mae and lomar:
        ratio = statistics.mean(r["pretrain_seconds"] for r in lomar) / statistics.mean(r["pretrain_seconds"] for r in mae)
        print(f"\nPretraining time LoMaR / MAE at {size}: {ratio:.2f} (mean seconds over the seeds)")
