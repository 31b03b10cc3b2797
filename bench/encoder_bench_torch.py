"""The same encoder forward+backward in PyTorch (Debian's python3-torch, CPU), same shapes and FLOP count.
  encoder_bench_torch.py [iters=10] [threads=2] [fma_peak_gflops=0: share not printed]"""
import math, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
iters = int(sys.argv[1]) if len(sys.argv) > 1 else 10
peak = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h = h
        s.norm1, s.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc1, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(s, x):
        B, T, D = x.shape
        q, k, v = s.qkv(s.norm1(x)).reshape(B, T, 3, s.h, D // s.h).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (D // s.h) ** -0.5).softmax(-1)
        x = x + s.proj((a @ v).transpose(1, 2).reshape(B, T, D))
        return x + s.fc2(F.gelu(s.fc1(s.norm2(x))))


class ViT(nn.Module):
    def __init__(s, img, ch, p, d, depth, h):
        super().__init__()
        s.pe = nn.Conv2d(ch, d, p, p)
        s.cls = nn.Parameter(torch.zeros(1, 1, d))
        s.pos = torch.zeros(1, (img // p) ** 2 + 1, d)
        s.blocks = nn.ModuleList([Block(d, h) for _ in range(depth)])
        s.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(s, x):
        x = s.pe(x).flatten(2).transpose(1, 2)
        x = torch.cat([s.cls.expand(x.shape[0], -1, -1), x], 1) + s.pos
        for b in s.blocks:
            x = b(x)
        return s.norm(x)


def bench(label, img, ch, p, batch, d=192, depth=12, h=3, n=None):
    m = ViT(img, ch, p, d, depth, h)
    x = torch.randn(batch, ch, img, img)
    T, D, L = (img // p) ** 2 + 1, d, (img // p) ** 2
    fwd = 2 * L * ch * p * p * D + depth * (24 * T * D * D + 4 * T * T * D)
    times = []
    n = n or iters
    for i in range(n + 2):
        t0 = time.perf_counter()
        y = m(x)
        y.backward(torch.ones_like(y))
        m.zero_grad(set_to_none=False)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    gf = 3 * fwd * batch / med / 1e9
    share = f"  {100 * gf / peak:5.1f} % of FMA peak" if peak > 0 else ""
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    print(f"pytorch    {label:<30s} {wait:<8s} batch {batch:3d}  {batch / med:8.1f} img/s  {gf:7.1f} GFLOP/s{share}  "
          f"(median of {n}, min {1e3 * min(times):.1f} max {1e3 * max(times):.1f} ms, torch {torch.__version__})", flush=True)


bench("ViT-Ti 28x28x1 p4 (50 tok)", 28, 1, 4, 64)
bench("ViT-Ti 224x224x3 p16 (197 tok)", 224, 3, 16, 16)
bench("ViT-B 224x224x3 p16 (197 tok)", 224, 3, 16, 8, d=768, h=12, n=max(3, iters // 2))
