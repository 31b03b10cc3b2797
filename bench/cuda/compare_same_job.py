#!/usr/bin/env python3
"""The vitfreeze-vs-PyTorch table of one GPU job (bench/cuda/run_gpu_bench.sh), from that job's files
only, so that every ratio it prints compares numbers measured in the same job:

  ROUND_DIR/vitfreeze_{mae_b,mae_ti,localmim_b}.txt   mae_step_bench / localmim_step_bench output
  ROUND_DIR/torch_mim_bench.json                       torch_mim_bench.py --json
  OUT_DIR/ceiling.txt                                  the measured bf16 GEMM ceiling (optional)

Usage: compare_same_job.py OUT_DIR --peak-tflops P   (one table per OUT_DIR/round*/)

Labels: MFU = achieved TFLOP/s over the published dense bf16 peak P (H100 SXM and H200: 989.4);
"% of ceiling" = over the bf16 GEMM throughput measured in the same job (8192^3). Pairing: vitfreeze's
eager step against PyTorch's modes without CUDA graphs; vitfreeze's CUDA-graph step only against
PyTorch's compile-reduce-overhead (CUDA graphs). Both sides: median of 5 block means of 20 steps
after 10 warm-up steps, frozen units 0, bf16, cuDNN attention where vitfreeze has it.
"""
import argparse, json, pathlib, re, sys

VITFREEZE_FILES = {"mae-b": "vitfreeze_mae_b.txt", "mae-ti": "vitfreeze_mae_ti.txt",
                   "localmim-b": "vitfreeze_localmim_b.txt"}
LINE = re.compile(r"frozen units +0(?P<note>[^:]*): step (?P<ms>[\d.]+) ms .*?, (?P<img>[\d.]+) img/s, "
                  r"(?P<tf>[\d.]+) TFLOP/s")
GRAPHED_MODE = "compile-reduce-overhead"


def vitfreeze_rows(path):
    """{'eager': (ms, img/s, TFLOP/s), 'graph': ...} from the unfrozen lines of a step bench's output."""
    rows = {}
    for line in path.read_text().splitlines():
        m = LINE.search(line)
        if not m or "GEMM attention" in m["note"]:
            continue
        rows["graph" if "CUDA graph" in m["note"] else "eager"] = (float(m["ms"]), float(m["img"]), float(m["tf"]))
    return rows


def ceiling(out_dir):
    f = out_dir / "ceiling.txt"
    m = re.search(r"([\d.]+) TFLOP/s", f.read_text()) if f.exists() else None
    return float(m[1]) if m else None


def table(round_dir, peak, ceil):
    torch_results = json.loads((round_dir / "torch_mim_bench.json").read_text())["results"]
    print(f"\n{round_dir.name}: MFU against {peak} TFLOP/s (published dense bf16 peak)"
          + (f", % of ceiling against {ceil} TFLOP/s (measured bf16 GEMM, same job)" if ceil else ""))
    print("| model | vitfreeze step | img/s (ms) | TFLOP/s | MFU | % of ceiling | PyTorch mode (SDPA) | PyTorch img/s (ms) | ratio |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    missing = []
    for model, name in VITFREEZE_FILES.items():
        path = round_dir / name
        if not path.exists():
            missing.append(str(path))
            continue
        for kind, (ms, img, tf) in sorted(vitfreeze_rows(path).items(), key=lambda kv: kv[0] != "eager"):
            peers = [r for r in torch_results if r["model"] == model and
                     (r["mode"].startswith(GRAPHED_MODE) == (kind == "graph"))]
            pct = f"{100 * tf / ceil:.1f} %" if ceil else "-"
            head = f"| {model} | {kind} | {img:.0f} ({ms:.2f}) | {tf:.1f} | {100 * tf / peak:.1f} % | {pct} |"
            if not peers:
                print(f"{head} (none in this job) | | |")
            for r in peers:
                sdpa = ",".join(r.get("sdpa_backends", [])) or "?"
                print(f"{head} {r['mode']} ({sdpa}) | {r['img_per_s']:.0f} ({r['step_ms']:.2f}) | "
                      f"{img / r['img_per_s']:.2f}x |")
    return missing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=pathlib.Path)
    ap.add_argument("--peak-tflops", type=float, required=True, help="published dense bf16 peak of the GPU")
    args = ap.parse_args()
    rounds = sorted(p for p in args.out_dir.glob("round*") if p.is_dir())
    if not rounds:
        sys.exit(f"compare_same_job: no round*/ directories in {args.out_dir}")
    missing = []
    for d in rounds:
        missing += table(d, args.peak_tflops, ceiling(args.out_dir))
    if missing:
        sys.exit("compare_same_job: missing " + ", ".join(missing))


if __name__ == "__main__":
    main()
