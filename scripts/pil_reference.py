#!/usr/bin/env python3
"""Reference outputs of the Pillow operations timm's RandAugment and torchvision's ColorJitter use
(Pillow 9.4, Debian python3-pil), for tests/test_augment.cpp: each operation on fixed test images,
written to tests/data/pil_reference.txt as `name: values...` (uint8, CHW order).

Usage: /usr/bin/python3 scripts/pil_reference.py > tests/data/pil_reference.txt
The test images are a formula the C++ test computes too (test_image below)."""
import math

from PIL import Image, ImageEnhance, ImageOps


def test_image(channels, height, width):
    """uint8 CHW values: a deterministic mixture of gradients and a pseudo-random term."""
    return [((c * 71 + y * 37 + x * 11 + (y * x * 13) % 29 * 5) % 256)
            for c in range(channels) for y in range(height) for x in range(width)]


def to_pil(values, channels, height, width):
    bands = [Image.frombytes("L", (width, height), bytes(values[c * height * width:(c + 1) * height * width]))
             for c in range(channels)]
    return bands[0] if channels == 1 else Image.merge("RGB", bands)


def to_values(img):
    return [v for band in img.split() for v in band.tobytes()]


def solarize_add(img, add, thresh=128):  # timm's
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    if img.mode == "RGB":
        lut = lut * 3
    return img.point(lut)


def cases(channels):
    fill = (73,) * channels if channels > 1 else 73
    affine = lambda m, r: (lambda im: im.transform(im.size, Image.AFFINE, m, resample=r, fillcolor=fill))
    return [
        ("autocontrast", ImageOps.autocontrast),
        ("equalize", ImageOps.equalize),
        ("invert", ImageOps.invert),
        ("posterize1", lambda im: ImageOps.posterize(im, 1)),
        ("posterize3", lambda im: ImageOps.posterize(im, 3)),
        ("solarize26", lambda im: ImageOps.solarize(im, 26)),
        ("solarize_add99", lambda im: solarize_add(im, 99)),
        ("brightness1.7", lambda im: ImageEnhance.Brightness(im).enhance(1.7)),
        ("brightness0.4", lambda im: ImageEnhance.Brightness(im).enhance(0.4)),
        ("contrast1.9", lambda im: ImageEnhance.Contrast(im).enhance(1.9)),
        ("contrast0.1", lambda im: ImageEnhance.Contrast(im).enhance(0.1)),
        ("color1.6", lambda im: ImageEnhance.Color(im).enhance(1.6)),
        ("sharpness1.9", lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
        ("sharpness0.1", lambda im: ImageEnhance.Sharpness(im).enhance(0.1)),
        ("shear_x0.3_bilinear", affine((1, 0.3, 0, 0, 1, 0), Image.BILINEAR)),
        ("shear_y-0.27_bicubic", affine((1, 0, 0, -0.27, 1, 0), Image.BICUBIC)),
        ("translate_x2.5_bilinear", affine((1, 0, 2.5, 0, 1, 0), Image.BILINEAR)),
        ("translate_y-3_bicubic", affine((1, 0, 0, 0, 1, -3), Image.BICUBIC)),
        ("rotate27.3_bicubic", lambda im: im.rotate(27.3, resample=Image.BICUBIC, fillcolor=fill)),
        ("rotate-13_bilinear", lambda im: im.rotate(-13, resample=Image.BILINEAR, fillcolor=fill)),
    ]


for channels, height, width in ((1, 9, 11), (3, 6, 7)):
    values = test_image(channels, height, width)
    for name, op in cases(channels):
        out = to_values(op(to_pil(values, channels, height, width)))
        print(f"{channels}x{height}x{width} {name}: {' '.join(map(str, out))}")
