#!/usr/bin/env python3
"""Quantized goldens: ggml's Q8_0 / Q4_0 reference quantization and the float64 forward on the
dequantized weights, for test/quant-golden.test.ts (issue 17, item 5).

For each fixture below and each format, reads the fixture's stored weights, quantizes every
decoder-layer projection weight (q/k/v/o/gate/up/down) with a port of ggml's
quantize_row_q8_0_ref / quantize_row_q4_0_ref written here from their definition (not from the
TypeScript runtime), dequantizes them (w = q * d, exact in float64), and runs
scripts/golden/reference.py's float64 forward over the fixture's golden ids with the dequantized
projections and every other tensor as stored. Writes test/fixtures/quant/<fixture>.<format>.safetensors:
  ids I32 [40], logits F32 [40, V], hidden F32 [40, D]   the float64 forward on the dequantized weights
  <PREFIX>.qweight U8, <PREFIX>.scales F16               this script's blocks (split-blocks layout:
                                                         src/quant/formats.ts), for every projection,
so the runtime's own quantizer is checked byte for byte against an independent port of ggml's
rounding, and its kernels against an independent forward.

ggml's rounding (float32 arithmetic throughout, 32 weights per block):
  Q8_0: amax = max|x|; d = amax / 127; id = 1/d (0 if d == 0); scale f16(d) (round to nearest even);
        q = roundf(x * id)  (half away from zero)
  Q4_0: max = the x of largest |x| (first on ties); d = max / -8; id as above; scale f16(d);
        q = min(15, (int8)(x * id + 8.5f))  (truncation); byte j = q[j] | q[j + 16] << 4

Run with Debian's PyTorch (as make_golden.py): /usr/bin/python3 scripts/golden/make_quant_golden.py
(--check compares a regeneration with the committed files byte for byte).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import json
import re
import tempfile
from typing import Dict, Tuple

import torch

from reference import ReferenceModel, model_spec_from_config
from cli import check_flag
from safetensors_io import read_checkpoint, read_safetensors, write_safetensors

SCRIPT = "scripts/golden/make_quant_golden.py"
ROOT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "models"
OUT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "quant"  # apart: make_golden.py rewrites models/*
FIXTURES = ["llama-gqa-f32", "llama3-scaled-bf16-sharded", "qwen2-bias-tied-f16"]
FORMATS = ["q8_0", "q4_0"]
PROJECTION = re.compile(r"^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$")
F32 = torch.float32


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C roundf on float32 values, evaluated exactly in float64."""
    d = v.to(torch.float64)
    return torch.sign(d) * torch.floor(d.abs() + 0.5)


def quantize_q8_0(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] float32 -> (qweight uint8 [N, K] (int8 bits), scales float16 [N, K/32])."""
    n, k = w.shape
    x = w.reshape(n, k // 32, 32).to(F32)
    amax = x.abs().amax(dim=-1)
    d = amax / torch.tensor(127.0, dtype=F32)
    inv = torch.where(d != 0, torch.tensor(1.0, dtype=F32) / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    q = round_half_away(x * inv.unsqueeze(-1)).to(torch.int64)
    if q.abs().max() > 127:
        raise RuntimeError("q8_0 value out of range")
    qw = (q & 0xFF).to(torch.uint8).reshape(n, k)
    return qw, d.to(torch.float16)


def quantize_q4_0(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] float32 -> (qweight uint8 [N, K/2] (GGUF nibble order), scales float16 [N, K/32])."""
    n, k = w.shape
    x = w.reshape(n, k // 32, 32).to(F32)
    idx = x.abs().argmax(dim=-1, keepdim=True)  # first maximal |x| (torch returns the first index)
    mx = torch.gather(x, -1, idx).squeeze(-1)
    d = mx / torch.tensor(-8.0, dtype=F32)
    inv = torch.where(d != 0, torch.tensor(1.0, dtype=F32) / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    t = x * inv.unsqueeze(-1) + torch.tensor(8.5, dtype=F32)  # float32 multiply, then float32 add
    q = torch.clamp(torch.trunc(t.to(torch.float64)).to(torch.int64), max=15)
    if q.min() < 0:
        raise RuntimeError("q4_0 value below 0")
    packed = q[..., :16] | (q[..., 16:] << 4)
    return packed.to(torch.uint8).reshape(n, k // 2), d.to(torch.float16)


def dequantize(qw: torch.Tensor, scales: torch.Tensor, fmt: str, k: int) -> torch.Tensor:
    n = qw.shape[0]
    d = scales.to(torch.float64).unsqueeze(-1)
    if fmt == "q8_0":
        q = qw.to(torch.int64).reshape(n, k // 32, 32)
        q = torch.where(q > 127, q - 256, q)
    else:
        b = qw.to(torch.int64).reshape(n, k // 32, 16)
        q = torch.cat([(b & 15) - 8, (b >> 4) - 8], dim=-1)
    return (q.to(torch.float64) * d).reshape(n, k)


def build(fixture: str, fmt: str, out_dir: Path) -> str:
    fdir = ROOT / fixture
    spec = model_spec_from_config(json.loads((fdir / "config.json").read_text()))
    stored = read_checkpoint(fdir)
    golden, _ = read_safetensors(fdir / "golden.safetensors")
    ids = golden["ids"]
    weights: Dict[str, torch.Tensor] = {}
    blocks: Dict[str, torch.Tensor] = {}
    err_num = 0.0
    err_den = 0.0
    for name, t in stored.items():
        if PROJECTION.match(name):
            w = t.to(F32)
            qw, sc = (quantize_q8_0 if fmt == "q8_0" else quantize_q4_0)(w)
            prefix = name[: -len(".weight")]
            blocks[f"{prefix}.qweight"] = qw
            blocks[f"{prefix}.scales"] = sc
            deq = dequantize(qw, sc, fmt, w.shape[1])
            err_num += float(((deq - w.to(torch.float64)) ** 2).sum())
            err_den += float((w.to(torch.float64) ** 2).sum())
            weights[name] = deq
        else:
            weights[name] = t
    logits, hidden, _ = ReferenceModel(spec, weights).forward(ids)
    base_logits = golden["logits"].to(torch.float64)
    rel = float((logits - base_logits).norm() / base_logits.norm())
    agree = float((logits.argmax(-1) == base_logits.argmax(-1)).to(torch.float64).mean())
    out = {"ids": ids, "logits": logits.to(F32), "hidden": hidden.to(F32), **blocks}
    meta = {
        "script": SCRIPT,
        "fixture": fixture,
        "format": fmt,
        "reference": "float64 PyTorch reimplementation (scripts/golden/reference.py) on weights dequantized from this script's port of ggml's quantize_row_*_ref",
        "torch_version": torch.__version__,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_dir / f"{fixture}.{fmt}.safetensors", out, meta)
    return (f"{fixture} {fmt}: weight rel L2 {(err_num / err_den) ** 0.5:.3e}; logits vs unquantized golden: "
            f"rel L2 {rel:.3e}, top-1 agreement {agree * 100:.1f}% over {ids.shape[0]} positions")


def main() -> int:
    check = check_flag(__doc__)
    if check:
        with tempfile.TemporaryDirectory() as tmp:
            bad = []
            for fx in FIXTURES:
                for fmt in FORMATS:
                    build(fx, fmt, Path(tmp))
                    a = (Path(tmp) / f"{fx}.{fmt}.safetensors").read_bytes()
                    b = (OUT / f"{fx}.{fmt}.safetensors").read_bytes()
                    if a != b:
                        bad.append(f"{fx}.{fmt}.safetensors")
            print("differs: " + ", ".join(bad) if bad else "all quantized goldens reproduce byte for byte")
            return 1 if bad else 0
    for fx in FIXTURES:
        for fmt in FORMATS:
            print(build(fx, fmt, OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
