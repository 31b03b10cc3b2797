#!/usr/bin/env python3
"""PyTorch side of bench/step_bench.cpp: one full CPU pretraining step (masks, forward, backward, AdamW,
zero_grad) of the same two models, fp32 eager (or bf16 autocast with --bf16), on random images
pre-generated and rotated over 4 batches. Model code: bench/cuda/torch_mim_bench.py.
  mae       MAE ViT-Ti 32x32x3 patch 4, decoder 128 x 2 blocks x 4 heads, mask 0.75
  localmim  the main job's LocalMIM ViT-Ti 28x28x1 patch 4, taps after blocks 1, 3, 9, 11 at scales
            4, 2, 1, 1, decoders 128 x 1 block x 4 heads, 9-bin HOG
  step_bench_torch.py CONFIG THREADS [batch=128] [steps=10] [warmup=3] [--bf16]
Prints one line in the C++ bench's format: median ms per step (each step timed alone), img/s, min/max."""
import os, statistics, sys, time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda"))
from torch_mim_bench import Cfg, build, make_optimizer, random_masks  # noqa: E402

CONFIGS = {
    "mae": Cfg("mae", img=32, patch=4, dim=192, heads=3, dec_dim=128, dec_depth=2, dec_heads=4),
    "localmim": Cfg("localmim", img=28, patch=4, dim=192, heads=3, dec_dim=128, dec_depth=1, dec_heads=4,
                    taps=[(1, 4, 1), (3, 2, 1), (9, 1, 1), (11, 1, 1)], channels=1),
}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    bf16 = "--bf16" in sys.argv
    if len(args) < 2 or args[0] not in CONFIGS:
        print(__doc__)
        return 2
    name, threads = args[0], int(args[1])
    batch, steps, warmup = (int(args[i]) if len(args) > i else d for i, d in ((2, 128), (3, 10), (4, 3)))
    torch.set_num_threads(threads)
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = build(c)
    opt = make_optimizer(model, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(batch, c.channels, c.img, c.img, generator=gen) for _ in range(4)]

    def step(k):
        masks = random_masks(batch, c, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(batches[k % 4], *masks)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for k in range(warmup):
        step(k)
    ms = []
    for k in range(warmup, warmup + steps):
        t = time.perf_counter()
        step(k)
        ms.append(1e3 * (time.perf_counter() - t))
    med = statistics.median(ms)
    mode = "bf16" if bf16 else "fp32"
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    print(f"pytorch    {name:<8s} {mode:<8s} threads {threads}  wait {wait:<7s} batch {batch}  {med:8.1f} ms/step  "
          f"{batch / (med / 1e3):7.1f} img/s  (min {min(ms):.1f} max {max(ms):.1f} ms, {steps} steps)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
