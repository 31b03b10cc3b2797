#!/usr/bin/env python3
"""Independent forward values for tests/test_vit_reference.cpp: multi-head attention and the whole
ViT-Ti encoder (28x28x1, patch 4: 49 patches + cls, 192 wide, 12 blocks, 3 heads, MLP 768, exact GELU,
LayerNorm eps 1e-6, MAE's fixed 2-D sin-cos positions), written here in plain PyTorch (Debian's
python3-torch 1.13) in float64 without any of the project's code.

Weights, images and the attention input are closed-form functions of (tensor name, element index)
that the C++ test computes too (`formula` below), so only outputs are stored. To keep the file small,
each encoder output is stored as every STRIDE-th element (attention: every element) plus the sum of every token row (a wrong value
anywhere moves a row sum).

Usage: /usr/bin/python3 scripts/vit_reference.py > tests/data/vit_reference.txt"""
import math

import torch

torch.set_default_dtype(torch.float64)
STRIDE = 11
D, DEPTH, HEADS, MLP, IMAGE, PATCH, CHANNELS, BATCH = 192, 12, 3, 768, 28, 4, 1, 2
GRID = IMAGE // PATCH


def name_key(name):
    return sum((k + 1) * ord(c) for k, c in enumerate(name)) % 1000


def formula(name, shape, amplitude, offset=0.0):
    """amplitude * sin(0.731 i + 0.017 key(name) + 0.3) + offset, i the row-major element index."""
    n = math.prod(shape)
    key = name_key(name)
    i = torch.arange(n, dtype=torch.float64)
    return (amplitude * torch.sin(0.731 * i + 0.017 * key + 0.3) + offset).reshape(shape)


def linear(name, out_features, in_features):
    return (formula(name + ".weight", (out_features, in_features), 1.0 / math.sqrt(in_features)),
            formula(name + ".bias", (out_features,), 0.1))


def layer_norm(name, x):
    w = formula(name + ".weight", (D,), 0.2, 1.0)
    b = formula(name + ".bias", (D,), 0.1)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * w + b


def attention(qkv, heads):
    """qkv [B, T, 3 D] (q, k, v blocks, heads consecutive inside each) -> [B, T, D]."""
    b, t, three_d = qkv.shape
    d = three_d // 3
    hd = d // heads
    q, k, v = qkv.reshape(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4)
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    return (p @ v).transpose(1, 2).reshape(b, t, d)


def sincos_1d(dim, positions):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim, grid):
    """MAE's table: first half from the column index, second from the row index; cls row of zeros."""
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    return torch.cat([torch.zeros(1, dim), table], dim=0)


def block(i, x):
    p = f"blocks.{i}"
    w, b = linear(p + ".attn.qkv", 3 * D, D)
    h = attention(layer_norm(p + ".norm1", x) @ w.T + b, HEADS)
    w, b = linear(p + ".attn.proj", D, D)
    x = x + h @ w.T + b
    w1, b1 = linear(p + ".mlp.fc1", MLP, D)
    w2, b2 = linear(p + ".mlp.fc2", D, MLP)
    h = layer_norm(p + ".norm2", x) @ w1.T + b1
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return x + h @ w2.T + b2


def encoder(images):
    """-> hidden states after blocks 0 and 5, and the final normed tokens, each [B, 1 + L, D]."""
    weight = formula("patch_embed.proj.weight", (D, CHANNELS, PATCH, PATCH), 1.0 / math.sqrt(CHANNELS * PATCH ** 2))
    bias = formula("patch_embed.proj.bias", (D,), 0.1)
    x = torch.nn.functional.conv2d(images, weight, bias, stride=PATCH).flatten(2).transpose(1, 2)
    pos = sincos_2d(D, GRID)
    x = x + pos[1:]
    cls = formula("cls_token", (1, 1, D), 0.5) + pos[:1]
    x = torch.cat([cls.expand(images.shape[0], -1, -1), x], dim=1)
    taps = {}
    for i in range(DEPTH):
        x = block(i, x)
        if i in (0, 5):
            taps[i] = x
    return taps[0], taps[5], layer_norm("norm", x)


def emit(name, t, stride=STRIDE):
    flat = t.reshape(-1)
    rows = t.reshape(-1, t.shape[-1]).sum(-1)
    print(f"tensor {name} {' '.join(str(s) for s in t.shape)}")
    print("stride", stride, " ".join(f"{v:.15e}" for v in flat[::stride].tolist()))
    print("row_sums", " ".join(f"{v:.15e}" for v in rows.tolist()))


def main():
    print("# scripts/vit_reference.py with PyTorch", torch.__version__, "(float64): outputs for formula-made inputs")
    qkv = formula("attention.qkv", (2, 5, 3 * 12), 1.5)
    emit("attention.out", attention(qkv, 3), stride=1)
    images = formula("images", (BATCH, CHANNELS, IMAGE, IMAGE), 1.5)
    tap0, tap5, tokens = encoder(images)
    emit("encoder.block0", tap0)
    emit("encoder.block5", tap5)
    emit("encoder.tokens", tokens)


if __name__ == "__main__":
    main()
