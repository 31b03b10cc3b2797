#!/usr/bin/env python3
"""Checks the #include graph of include/vitfreeze/ against the layering table of docs/design.md.

Each header belongs to a layer (its folder under include/vitfreeze/; backend/cpu/ and backend/cuda/
are layers of their own, the files directly in backend/ are the layer `backend`, the umbrella headers
at the top the layer `umbrella`). A layer may include its own headers and those of the layers its
row in the table lists ("*": every layer). Any other arrow fails the check, unless it is one of the
known exceptions below: arrows that predate the table, each with the reason it is still there,
printed as warnings. The list can only shrink: an exception that no longer occurs fails the check
too, so whoever removes an arrow also removes its entry.

    python3 scripts/check_layering.py [--root DIR]     exit 0: clean (warnings allowed), 1: violations
"""
import argparse
import re
import sys
from pathlib import Path

TABLE_START = "<!-- layering table (scripts/check_layering.py reads it) -->"
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](vitfreeze/[^">]+)[">]')

# (header, layer it includes) -> why the arrow is still there. Remove an entry with its arrow.
EXCEPTIONS = {
    # A first version: MiCL's contrastive loss on the GPU downloads z and runs the CPU kernel.
    ("backend/cuda/backend.cuh", "backend/cpu"): "MiCL's t-vMF InfoNCE runs backend/cpu/contrastive.hpp on the host",
    # io/ should know no model: weight files and checkpoints take parameter lists from the trainer.
    ("io/checkpoint.hpp", "autograd"): "includes the forwarding header autograd/parameter.hpp (Parameter is in core/)",
    ("io/weights.hpp", "nn"): "the timm weight interchange reads ViTSpec and the position embedding of nn/",
    # nn::ParameterList (a vector of core Parameter pointers) belongs in core/parameter.hpp.
    ("optim/param_groups.hpp", "nn"): "nn::ParameterList",
    ("dist/replica_group.hpp", "nn"): "nn::ParameterList",
    # mim/ reaching sideways.
    ("mim/mae_lite.hpp", "data"): "MaeLiteRecipe names its crop interpolation (data::Interpolation)",
    ("mim/reconstruction.hpp", "data"): "reconstructions are un-normalised with data::Normalize",
    ("mim/scale_head.hpp", "io"): "ConvTranspose2x2::torch_weight converts with io/torch_layout.hpp",
}


def layer_of(relative: str) -> str:
    """The layer of a header given relative to include/vitfreeze/."""
    parts = relative.split("/")
    if len(parts) == 1:
        return "umbrella"
    if parts[0] == "backend" and len(parts) > 2:
        return "backend/" + parts[1]
    return parts[0]


def read_table(design: Path) -> dict:
    """Layer -> set of layers it may include, from the table after TABLE_START."""
    lines = design.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(TABLE_START)
    except ValueError:
        sys.exit(f"{design}: no line '{TABLE_START}'")
    allowed = {}
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            if allowed:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[0]) <= set("-: ") or cells[0] == "layer":
            continue
        layer = cells[0].strip("`").rstrip("/")
        targets = cells[-1]
        allowed[layer] = {"*"} if targets == "*" else {
            t.strip().strip("`").rstrip("/") for t in targets.split(",") if t.strip() not in ("", "—", "-")}
    if not allowed:
        sys.exit(f"{design}: the layering table is empty")
    return allowed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    include_root = args.root / "include" / "vitfreeze"
    allowed = read_table(args.root / "docs" / "design.md")
    for layer, targets in allowed.items():
        unknown = targets - set(allowed) - {"*"}
        if unknown:
            sys.exit(f"docs/design.md: layer {layer} lists unknown layers {sorted(unknown)}")

    errors, warnings, used = [], [], set()
    headers = sorted(p for p in include_root.rglob("*") if p.is_file() and p.suffix in (".hpp", ".cuh", ".h"))
    for header in headers:
        relative = header.relative_to(include_root).as_posix()
        source = layer_of(relative)
        if source not in allowed:
            errors.append(f"{relative}: layer '{source}' is not in the table of docs/design.md")
            continue
        for number, line in enumerate(header.read_text(encoding="utf-8").splitlines(), 1):
            match = INCLUDE.match(line)
            if not match:
                continue
            target = layer_of(match.group(1).split("/", 1)[1])
            if target == source or "*" in allowed[source] or target in allowed[source]:
                continue
            arrow = f"{relative}:{number}: {source} -> {target} ({match.group(1)})"
            if (relative, target) in EXCEPTIONS:
                used.add((relative, target))
                warnings.append(f"{arrow}: known exception: {EXCEPTIONS[(relative, target)]}")
            else:
                errors.append(f"{arrow}: not allowed ({source} may include: {', '.join(sorted(allowed[source])) or 'nothing'})")
    for stale in sorted(set(EXCEPTIONS) - used):
        errors.append(f"{stale[0]} -> {stale[1]}: listed as an exception but no longer included; "
                      "remove it from EXCEPTIONS in scripts/check_layering.py")

    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"layering: {len(headers)} headers, {len(warnings)} known exceptions, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
