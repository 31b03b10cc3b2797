#!/usr/bin/env python3
"""PyTorch reference for the GPU benchmarks: one full pretraining step (forward, backward, fused AdamW
step, zero_grad(set_to_none=True)) of MAE ViT-B/16, MAE ViT-Ti/16 and LocalMIM ViT-B/16 at 224 px.

Conventions are those of include/vitfreeze/mim/ and shared/spec/: MAE masking (per-sample argsort of
uniform noise, keep int(L*(1-r)), mask = 1 for removed); sin-cos positions with a zero cls row; the
MAE decoder drops cls before its prediction; norm-pix targets on pixel-major (u, v, c) patches with
the unbiased variance + 1e-6. LocalMIM: taps after blocks [1, 3, depth-3, depth-1] at scales
[4, 2, 1, 1/2] (localmim.hpp's default localmim_taps<Depth>, for depth 12 the paper's ViT-B setting),
a LayerNorm + one-block decoder (256 wide, 8 heads) + conv scale head per tap, 9-bin HOG targets
computed on the device inside the step (hog.hpp), re-scaled masks, four masked MSE terms summed.

FLOPs are analytic (flops_per_image): 2*M*N*K per forward GEMM (attention QK^T and PV included; convs
as GEMMs; norms, softmax, GELU, HOG not counted), x3 per training step, as include/vitfreeze/nn/flops.hpp.
MFU = achieved TFLOP/s over the GPU's published dense bf16 peak (--peak-tflops; H100 SXM and H200:
989.4), the one definition bench/RESULTS.md and docs/cuda.md use.

Modes: eager (bf16 autocast), compile (torch.compile default), compile-max-autotune,
compile-reduce-overhead (CUDA graphs: the one to compare with vitfreeze's graphed step), eager-fp32
(PyTorch's default fp32 matmul precision); a "+cudnn" suffix pins scaled_dot_product_attention to
cuDNN's backend (e.g. eager+cudnn). cudnn.benchmark is on. Each result records the SDPA backend
PyTorch ran (seen by the profiler on one step; not visible under CUDA-graph replay).

Statistic, the same as vitfreeze's step benches (bench/cuda/step_bench.hpp): --warmup untimed steps,
then --repeats blocks of --steps steps, each block timed by CUDA events around it; the step time is
the median of the block means. Inputs (images and masks) are made before timing, --input-sets of
them used in rotation, as vitfreeze's benches do. Without CUDA (or with --smoke) a tiny config runs.
"""
import argparse, contextlib, json, math, statistics, sys, time
from dataclasses import dataclass, field, replace, asdict
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Cfg:
    kind: str  # "mae" or "localmim"
    img: int = 224
    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 4
    mask: float = 0.75
    dec_dim: int = 512
    dec_depth: int = 8
    dec_heads: int = 16
    nbins: int = 9
    taps: list = field(default_factory=list)  # LocalMIM: (block, scale_num, scale_den)
    channels: int = 3

    grid = property(lambda s: s.img // s.patch)
    tokens = property(lambda s: s.grid ** 2)
    kept = property(lambda s: int(s.tokens * (1 - s.mask)))  # floor, as masking.hpp kept_count
    patch_dim = property(lambda s: s.patch * s.patch * s.channels)


def localmim_taps(depth):  # include/vitfreeze/mim/localmim.hpp localmim_taps<Depth>
    return [(1, 4, 1), (3, 2, 1), (depth - 3, 1, 1), (depth - 1, 1, 2)]


MODELS = {
    "mae-b": Cfg("mae"),
    "mae-ti": Cfg("mae", dim=192, heads=3),
    "localmim-b": Cfg("localmim", dec_dim=256, dec_depth=1, dec_heads=8, taps=localmim_taps(12)),
}


def smoke_cfg(c):  # img 32, patch 8, depth 4, widths / 12 (heads / 3); same structure
    return replace(c, img=32, patch=8, dim=c.dim // 12, depth=4, heads=c.heads // 3, dec_dim=32, dec_heads=4,
                   dec_depth=min(c.dec_depth, 2), taps=localmim_taps(4) if c.taps else [])


def block_flops(t, d, r=4):  # qkv 6td^2 + proj 2td^2 + mlp 4rtd^2 + QK^T and PV 4t^2 d
    return (8 + 4 * r) * t * d * d + 4 * t * t * d


def head_flops(c, num, den, out):  # LocalMIM scale heads as GEMMs: (pixels, in, out); ConvT k2 s2 = 4*out
    g, dd = c.grid, c.dec_dim
    gemms = {(4, 1): [(g * g, dd, 2 * dd), (4 * g * g, dd // 2, dd), (16 * g * g, dd // 4, out)],
             (2, 1): [(g * g, dd, 2 * dd), (4 * g * g, dd // 2, out)],
             (1, 1): [(g * g, dd, out)], (1, 2): [(g * g // 4, dd, out)]}[(num, den)]
    return sum(2 * m * k * n for m, k, n in gemms)


def flops_per_image(c):
    """Forward FLOPs per image by part, and 'train' = 3 x forward."""
    L, K = c.tokens, c.kept
    enc_depth = c.depth if c.kind == "mae" else max(b for b, _, _ in c.taps) + 1
    f = {"patch_embed": 2 * L * c.patch_dim * c.dim, "encoder_blocks": enc_depth * block_flops(K + 1, c.dim, c.mlp)}
    dec = 2 * (K + 1) * c.dim * c.dec_dim + c.dec_depth * block_flops(L + 1, c.dec_dim, c.mlp)
    if c.kind == "mae":
        f["decoder"], f["pred"] = dec, 2 * L * c.dec_dim * c.patch_dim
    else:
        f["decoder"] = len(c.taps) * dec
        f["pred"] = sum(head_flops(c, n, d, c.channels * c.nbins) for _, n, d in c.taps)
    f["forward"] = sum(f.values())
    f["train"] = 3 * f["forward"]
    return f


def sincos_pos_2d(dim, grid):  # nn/pos_embed.hpp: [1 + g*g, dim], zero cls row
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    i, j = torch.meshgrid(*[torch.arange(grid, dtype=torch.float64)] * 2, indexing="ij")  # row, column
    i, j = i.reshape(-1, 1) * omega, j.reshape(-1, 1) * omega
    pe = torch.cat([j.sin(), j.cos(), i.sin(), i.cos()], 1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), pe]).float().unsqueeze(0)


class OwnBlock(nn.Module):  # pre-LN ViT block, the same math as timm's Block (SDPA where torch has it)
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=None):
        super().__init__()
        self.h = num_heads
        self.norm1, self.norm2 = norm_layer(dim), norm_layer(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=qkv_bias), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4).unbind(0)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v)
        else:  # torch < 2.0 (CPU smoke test only)
            a = ((q @ k.transpose(-2, -1)) * (D // self.h) ** -0.5).softmax(-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


BLOCK = OwnBlock  # replaced by timm's Block in main() when timm is importable (and --block timm)


def make_block(dim, heads, mlp):
    return BLOCK(dim=dim, num_heads=heads, mlp_ratio=float(mlp), qkv_bias=True,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6))  # timm passes device=, dtype= too


class Encoder(nn.Module):
    def __init__(self, c, final_norm=True):
        super().__init__()
        self.patch_embed = nn.Conv2d(c.channels, c.dim, c.patch, c.patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, c.dim) * 0.02)
        self.register_buffer("pos", sincos_pos_2d(c.dim, c.grid), persistent=False)
        self.blocks = nn.ModuleList(make_block(c.dim, c.heads, c.mlp) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=1e-6) if final_norm else None

    def forward(self, imgs, ids_keep, taps=()):
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos[:, 1:]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([(self.cls_token + self.pos[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        outs, last = [], max(taps) if taps else len(self.blocks) - 1
        for i, blk in enumerate(self.blocks[: last + 1]):
            x = blk(x)
            outs += [x] * taps.count(i)
        return outs if taps else self.norm(x)


class Decoder(nn.Module):  # mae_decoder.hpp; without out_dim it returns the normed patch tokens (LocalMIM)
    def __init__(self, c, out_dim=None):
        super().__init__()
        self.embed = nn.Linear(c.dim, c.dec_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, c.dec_dim) * 0.02)
        self.register_buffer("pos", sincos_pos_2d(c.dec_dim, c.grid), persistent=False)
        self.blocks = nn.ModuleList(make_block(c.dec_dim, c.dec_heads, c.mlp) for _ in range(c.dec_depth))
        self.norm = nn.LayerNorm(c.dec_dim, eps=1e-6)
        self.pred = nn.Linear(c.dec_dim, out_dim) if out_dim else None

    def forward(self, latent, ids_restore):
        x = self.embed(latent)
        B, K1, Dd = x.shape
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(B, ids_restore.shape[1] + 1 - K1, -1)], 1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))
        x = torch.cat([x[:, :1], x_], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)[:, 1:]  # drop cls before the prediction (our convention; FLOPs count L rows)
        return self.pred(x) if self.pred is not None else x


def masked_mse(pred, target, mask):
    per = ((pred.float() - target) ** 2).mean(-1)
    return (per * mask).sum() / mask.sum()


class MAE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch = c.patch  # plain ints and tuples only (nothing for torch.compile to trace through Cfg)
        self.encoder, self.decoder = Encoder(c), Decoder(c, c.patch_dim)

    def forward(self, imgs, ids_keep, ids_restore, mask):
        pred = self.decoder(self.encoder(imgs, ids_keep), ids_restore)
        with torch.no_grad():
            target = patchify(imgs.float(), self.patch)
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)  # unbiased
            target = (target - mean) / (var + 1e-6).sqrt()
        return masked_mse(pred, target, mask)


def patchify(imgs, p):  # [B, 3, H, W] -> [B, L, p*p*3], pixel-major (u, v, c) as patchify.hpp
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


class LayerNorm2d(nn.LayerNorm):  # over channels of [B, C, H, W], eps 1e-6
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def scale_head(dd, num, den, out):  # scale_head.hpp / LocalMIM MAE_Decoder.pred
    if (num, den) == (4, 1):
        return nn.Sequential(nn.ConvTranspose2d(dd, dd // 2, 2, 2), LayerNorm2d(dd // 2, eps=1e-6), nn.GELU(),
                             nn.ConvTranspose2d(dd // 2, dd // 4, 2, 2), nn.Conv2d(dd // 4, out, 1))
    if (num, den) == (2, 1):
        return nn.Sequential(nn.ConvTranspose2d(dd, dd // 2, 2, 2), nn.Conv2d(dd // 2, out, 1))
    if (num, den) == (1, 1):
        return nn.Conv2d(dd, out, 1)
    assert (num, den) == (1, 2), (num, den)
    return nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(dd, out, 1))


def hog_targets(imgs, nbins, pools):
    """hog.hpp: per channel, reflect-padded Sobel written as differences (flat regions give exact 0),
    mag and atan2(g0, g1) phase, hard bin floor(phase/pi*nbins) mod nbins, average pooling per cell,
    L2 over the bins of each (cell, channel). Returns [B, cells, C*nbins] for each pool."""
    B, C, H, W = imgs.shape
    xp = F.pad(imgs, (1, 1, 1, 1), mode="reflect")
    d = xp[..., :, :-2] - xp[..., :, 2:]  # x[r][c-1] - x[r][c+1], rows -1..H
    e = xp[..., :-2, :] - xp[..., 2:, :]  # x[r-1][c] - x[r+1][c], cols -1..W
    g0 = d[..., :-2, :] + 2 * d[..., 1:-1, :] + d[..., 2:, :]
    g1 = e[..., :-2] + 2 * e[..., 1:-1] + e[..., 2:]
    mag = torch.sqrt(g0 * g0 + g1 * g1)
    bins = torch.remainder(torch.floor(torch.atan2(g0, g1) / math.pi * nbins).long(), nbins)
    onehot = bins.unsqueeze(2) == torch.arange(nbins, device=imgs.device).view(1, 1, nbins, 1, 1)
    hist = (mag.unsqueeze(2) * onehot).flatten(1, 2)  # [B, C*nbins, H, W], channel-major (c*nbins + k)
    base = min(pools)
    fine = F.avg_pool2d(hist, base)
    outs = []
    for p in pools:
        h = F.avg_pool2d(fine, p // base) if p != base else fine
        h = F.normalize(h.view(B, C, nbins, *h.shape[-2:]), p=2, dim=2, eps=1e-12)
        outs.append(h.flatten(1, 2).flatten(2).transpose(1, 2))
    return outs


def rescale_mask(mask, g, num, den):  # mask_rescale.hpp: nearest up by num, average down by den
    m = mask.view(-1, 1, g, g).repeat_interleave(num, 2).repeat_interleave(num, 3)
    return (F.avg_pool2d(m, den) if den > 1 else m).flatten(1)


class LocalMIM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.grid, self.nbins, self.taps, out = c.grid, c.nbins, tuple(c.taps), c.channels * c.nbins
        self.encoder = Encoder(c, final_norm=False)
        self.norm = nn.ModuleList(nn.LayerNorm(c.dim, eps=1e-6) for _ in c.taps)
        self.decoder = nn.ModuleList(Decoder(c) for _ in c.taps)
        self.pred = nn.ModuleList(scale_head(c.dec_dim, n, d, out) for _, n, d in c.taps)
        self.pools = [c.patch * d // n for _, n, d in c.taps]

    def forward(self, imgs, ids_keep, ids_restore, mask):
        with torch.no_grad(), torch.autocast(imgs.device.type, enabled=False):
            targets = hog_targets(imgs.float(), self.nbins, sorted(set(self.pools)))
        by_pool = dict(zip(sorted(set(self.pools)), targets))
        taps = self.encoder(imgs, ids_keep, [b for b, _, _ in self.taps])
        g, loss = self.grid, 0.0
        for k, (_, n, d) in enumerate(self.taps):
            x = self.decoder[k](self.norm[k](taps[k]), ids_restore)  # [B, L, Dd]
            x = self.pred[k](x.transpose(1, 2).reshape(x.shape[0], -1, g, g)).flatten(2).transpose(1, 2)
            loss = loss + masked_mse(x, by_pool[self.pools[k]], rescale_mask(mask, g, n, d))
        return loss


def build(c):
    return MAE(c) if c.kind == "mae" else LocalMIM(c)


def random_masks(B, c, device):  # masking.hpp Random: argsort of uniform noise per sample
    ids_shuffle = torch.argsort(torch.rand(B, c.tokens, device=device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(B, c.tokens, device=device)
    mask[:, : c.kept] = 0
    return ids_shuffle[:, : c.kept], ids_restore, torch.gather(mask, 1, ids_restore)


def make_optimizer(model, device):
    # MAE recipe: weight decay 0.05 except biases and norms; fused only where it exists (CUDA)
    groups = [{"params": [p for p in model.parameters() if (p.ndim >= 2) == d], "weight_decay": 0.05 * d}
              for d in (True, False)]
    return torch.optim.AdamW(groups, lr=1.5e-4, betas=(0.9, 0.95), **({"fused": True} if device.type == "cuda" else {}))


COMPILE_MODES = {"compile": "default", "compile-max-autotune": "max-autotune",
                 "compile-reduce-overhead": "reduce-overhead"}
MODES = {"eager", "eager-fp32", *COMPILE_MODES}


def parse_mode(mode):  # "compile+cudnn" -> ("compile", True)
    base, _, pin = mode.partition("+")
    assert base in MODES and pin in ("", "cudnn"), f"unknown mode {mode}"
    return base, pin == "cudnn"


def attention_context(pin_cudnn):
    """A context pinning F.scaled_dot_product_attention to cuDNN's backend (torch >= 2.3), or none."""
    if not pin_cudnn:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.CUDNN_ATTENTION])


SDPA_OPS = {"_scaled_dot_product_cudnn_attention": "cudnn", "_scaled_dot_product_flash_attention": "flash",
            "_scaled_dot_product_efficient_attention": "mem_efficient", "_efficient_attention_forward": "mem_efficient",
            "_flash_attention_forward": "flash", "_scaled_dot_product_attention_math": "math"}


def sdpa_backends(run_step):
    """The SDPA backends the profiler sees in one step: the aten kernels PyTorch dispatched to."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_step()
    seen = {backend for e in prof.key_averages() for op, backend in SDPA_OPS.items() if e.key.endswith(op)}
    return sorted(seen) or ["not visible (CUDA-graph replay or no SDPA op)"]


def bench(name, c, mode, args, device):
    torch.manual_seed(0)
    model = build(c).to(device)
    opt = make_optimizer(model, device)
    base, pin_cudnn = parse_mode(mode)
    fn = torch.compile(model, mode=COMPILE_MODES[base]) if base in COMPILE_MODES else model
    graphed = base == "compile-reduce-overhead"
    mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", lambda: None)
    B, cuda = args.batch, device.type == "cuda"
    inputs = [(torch.randn(B, c.channels, c.img, c.img, device=device), *random_masks(B, c, device))
              for _ in range(args.input_sets)]  # made before timing, used in rotation (vitfreeze: kInputSets)
    counter = [0]

    def step():
        imgs, *masks = inputs[counter[0] % len(inputs)]
        counter[0] += 1
        if graphed:
            mark_step()  # a new training iteration: the graph's previous outputs may be overwritten
        with attention_context(pin_cudnn), torch.autocast(device.type, dtype=torch.bfloat16, enabled=base != "eager-fp32"):
            loss = fn(imgs, *masks)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def timed(n):  # (seconds per step over a block of n steps, last loss): CUDA events around the block
        if not cuda:
            t = time.perf_counter()
            loss = [step() for _ in range(n)][-1]
            return (time.perf_counter() - t) / n, float(loss)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(n):
            loss = step()
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3 / n, float(loss)

    first, loss = timed(1)  # includes compilation in the compile modes
    if args.warmup > 1:
        timed(args.warmup - 1)
    backends = sdpa_backends(step) if cuda else ["cpu"]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = zip(*(timed(args.steps) for _ in range(args.repeats)))
    loss = losses[-1]
    assert math.isfinite(loss), f"{name} {mode}: loss {loss}"
    med, fl = statistics.median(times), flops_per_image(c)
    res = {"model": name, "mode": mode, "batch": B, "step_ms": 1e3 * med, "step_ms_all": [1e3 * t for t in times],
           "img_per_s": B / med, "tflops": fl["train"] * B / med / 1e12, "train_flops_per_image": fl["train"],
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "first_step_s": first, "loss": loss, "sdpa_backends": backends}
    res["mfu_pct"] = 100 * res["tflops"] / args.peak_tflops
    print(f"  {name:<11s} {mode:<24s} {res['step_ms']:8.2f} ms/step  {res['img_per_s']:8.1f} img/s  "
          f"{res['tflops']:7.1f} TFLOP/s  first step {first:6.1f} s  loss {loss:.4f}  SDPA {','.join(backends)}",
          flush=True)
    fn = model = opt = losses = None  # free this model's memory before the next one
    if base in COMPILE_MODES:
        torch._dynamo.reset()
    if cuda:
        torch.cuda.empty_cache()
    return res


def measured_forward_flops(model, c, device, B=2):
    """Forward matmul/conv FLOPs per image by torch's own counter (FlopCounterMode, else profiler)."""
    imgs, masks = torch.randn(B, c.channels, c.img, c.img, device=device), random_masks(B, c, device)
    try:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            model(imgs, *masks)
        return fc.get_total_flops() / B
    except ImportError:  # torch < 2.1: the profiler counts conv2d and matmuls, not transposed convs
        with torch.profiler.profile(with_flops=True) as prof:
            model(imgs, *masks)
        gemm = ("aten::conv2d", "aten::addmm", "aten::mm", "aten::bmm")
        return sum(e.flops for e in prof.key_averages() if e.key in gemm) / B


def smoke_checks(device):
    c = smoke_cfg(MODELS["mae-b"])
    ids_keep, ids_restore, mask = random_masks(3, c, device)
    assert torch.equal(torch.gather(mask, 1, ids_keep), torch.zeros_like(ids_keep, dtype=mask.dtype))
    assert int(mask.sum()) == 3 * (c.tokens - c.kept)
    assert torch.equal(torch.sort(ids_restore, 1).values, torch.arange(c.tokens, device=device).expand(3, -1))
    # HOG hand vectors of tests/test_mim_targets.cpp: 8x8 step edges, pool 2 -> bin 4 (vertical), 0 (horizontal)
    for vertical, want in ((True, 4), (False, 0)):
        img = torch.zeros(1, 3, 8, 8, device=device)
        (img[..., :, 4:] if vertical else img[..., 4:, :]).fill_(1.0)
        h = hog_targets(img, 9, [2])[0].view(4, 4, 27)
        exp = torch.zeros(4, 4, 27, device=device)
        for i in (1, 2):
            (exp[:, i] if vertical else exp[i])[:, [want, 9 + want, 18 + want]] = 1.0
        assert torch.allclose(h, exp), f"HOG step edge (vertical={vertical})"
    assert hog_targets(torch.full((1, 3, 8, 8), 0.7309, device=device), 9, [1])[0].abs().sum() == 0
    # norm-pix target layout: patchify is pixel-major (u, v, c)
    x = torch.randn(1, 3, 16, 16, device=device)
    assert patchify(x, 8)[0, 3, (2 * 8 + 5) * 3 + 1] == x[0, 1, 8 + 2, 8 + 5]
    for name, base in MODELS.items():
        c = smoke_cfg(base)
        model = build(c).to(device)
        model(torch.randn(4, c.channels, c.img, c.img, device=device), *random_masks(4, c, device)).backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert not unused, f"{name}: parameters without gradient: {unused}"
    print("smoke checks passed (masks, HOG hand vectors, patchify layout, every parameter gets a gradient)")


def main():
    global BLOCK
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--models", default="mae-b,mae-ti,localmim-b")
    ap.add_argument("--modes", default="eager,compile,compile-max-autotune,compile-reduce-overhead,eager+cudnn",
                    help=f"comma list of {', '.join(sorted(MODES))}, each optionally with +cudnn")
    # The defaults are vitfreeze's (step_bench.hpp: kWarmupSteps, kTimedBlocks, steps, kInputSets).
    for flag, default in (("batch", 256), ("steps", 20), ("warmup", 10), ("repeats", 5), ("input-sets", 4)):
        ap.add_argument(f"--{flag}", type=int, default=default)
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny config (img 32, patch 8, depth 4, batch 4)")
    ap.add_argument("--block", choices=["timm", "own"], default="timm")
    ap.add_argument("--no-flop-check", action="store_true", help="skip the torch FLOP counter cross-check")
    ap.add_argument("--peak-tflops", type=float, default=989.4,
                    help="published dense bf16 peak for MFU (H100 SXM and H200: 989.4)")
    args = ap.parse_args()
    models, modes = args.models.split(","), args.modes.split(",")
    assert set(models) <= set(MODELS), f"unknown model in {models}; have {list(MODELS)}"
    for m in modes:
        parse_mode(m)
    try:
        if args.block == "timm":
            from timm.models.vision_transformer import Block as BLOCK
    except ImportError:
        print("timm not importable: using the script's own block (same math)")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.backends.cudnn.benchmark = True  # the convolutions (patch embedding, LocalMIM heads) pick their best
    device, device_name = torch.device("cuda" if cuda else "cpu"), torch.cuda.get_device_name() if cuda else "cpu"
    if not cuda:
        print("CUDA is not available: running the CPU smoke test only.")
        args.smoke = True
        modes = ["eager", "eager-fp32"]  # a shape and smoke check: no compilation on the CPU
        args.steps, args.warmup, args.repeats = 2, 1, 1
    if args.smoke:
        args.batch = 4
        smoke_checks(device)
    print(f"torch {torch.__version__}, device {device_name}, "
          f"block {BLOCK.__module__}.{BLOCK.__name__}, batch {args.batch}, warmup {args.warmup}, "
          f"median of {args.repeats} blocks of {args.steps} steps, {args.input_sets} input sets, "
          f"MFU against {args.peak_tflops} TFLOP/s")

    results, flops = [], {}
    meta = {**vars(args), "modes": modes, "torch": torch.__version__, "cudnn_benchmark": cuda,
            "statistic": f"median of {args.repeats} block means, {args.steps} steps a block, after {args.warmup} warm-up steps",
            "block": f"{BLOCK.__module__}.{BLOCK.__name__}", "device": device_name}
    for name in models:
        c = smoke_cfg(MODELS[name]) if args.smoke else MODELS[name]
        f = flops[name] = {**flops_per_image(c), "config": asdict(c)}
        print(f"{name}: forward {f['forward'] / 1e9:.4f} GFLOP/img (patch embed {f['patch_embed'] / 1e9:.4f}, "
              f"encoder blocks {f['encoder_blocks'] / 1e9:.4f}, decoder {f['decoder'] / 1e9:.4f}, "
              f"pred {f['pred'] / 1e9:.4f}), train step {f['train'] / 1e9:.4f} GFLOP/img", flush=True)
        if not args.no_flop_check:
            f["torch_counter_forward"] = measured_forward_flops(build(c).to(device), c, device)
            print(f"  forward FLOPs/img by torch's counter: {f['torch_counter_forward'] / 1e9:.4f} G "
                  f"(analytic / counter = {f['forward'] / f['torch_counter_forward']:.4f})", flush=True)
        for mode in modes:
            results.append(bench(name, c, mode, args, device))
            if args.json:  # after every run, so a run cut short still leaves its results
                with open(args.json, "w") as fh:
                    json.dump({"meta": meta, "flops_per_image": flops, "results": results}, fh, indent=1)

    print(f"\nMFU = achieved TFLOP/s / {args.peak_tflops} TFLOP/s (published dense bf16 peak)")
    print(f"{'model':<11s} {'mode':<24s} {'batch':>5s} {'ms/step':>9s} {'img/s':>9s} {'GFLOP/img':>10s} "
          f"{'TFLOP/s':>8s} {'MFU%':>6s} {'peak GiB':>9s} {'1st step s':>10s}")
    for r in results:
        mem = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}"
        print("{model:<11s} {mode:<24s} {batch:5d} {step_ms:9.2f} {img_per_s:9.1f} {gf:10.3f} {tflops:8.1f} "
              "{mfu_pct:6.1f} {mem:>9s} {first_step_s:10.1f}".format(**r, gf=r["train_flops_per_image"] / 1e9, mem=mem))
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
