#!/usr/bin/python3
"""Golden values of one OneGen training step (issue 9): losses and gradients in float64 PyTorch.

Writes test/fixtures/train/step.safetensors and test/fixtures/train/adamw.safetensors from the
f32 fixture test/fixtures/models/llama-gqa-f32 (D 64, 2 layers, H 4 / Hkv 2, hd 16, F 160, V 384).

The batch: two packed sequences (20 and 13 tokens, T = 33; positions restart at 0, no attention
across sequences), a generation-token mask (prompt and an injected paragraph span are not
targets) and a retrieval token RQ = 383 in each sequence whose next-token label is masked:
  label[t] = ids[t+1]  if t+1 is in t's sequence, target[t+1] = 1 and ids[t] != RQ, else -1
  L_gen    = mean over unmasked rows of logsumexp(logits[t]) - logits[t, label[t]]
  L_ret    = InfoNCE over cosine similarity / tau of final-norm hidden states: for each pair
             (anchor row, positive doc, hard negatives) the candidates are the positive, the hard
             negatives, then every other document row except positives of pairs with the same
             anchor row; L_ret = mean over pairs of -log softmax(candidates)[positive]
  L        = lambda_gen * L_gen + lambda_ret * L_ret
Gradients by autograd (torch.float64) for every weight (full fine-tuning), and, in a second run
with LoRA adapters (r 4, alpha 8, all seven projections, y = x W^T + (alpha/r) (x A^T) B^T, no
dropout, B random so both adapter gradients are non-zero), for the adapters only. The BPR loss
(mean over negatives of -log sigmoid((s_pos - s_neg)/tau), mean over pairs) of the same hidden
states is stored as a value cross-check.

adamw.safetensors: torch.optim.AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on "w" only)
with torch.nn.utils.clip_grad_norm_(max_norm 1.0) over two steps with learning rates 1e-2, 5e-3,
on two float64 tensors with given gradients: the reference semantics of src/train/optim.ts.

Usage: /usr/bin/python3 scripts/golden/train_step.py [--check]
Deterministic: random values from Python's random.Random seeded with fixed strings.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import json
import math
import random
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from reference import apply_rope, inv_freq_for, model_spec_from_config, rms_norm, rope_cos_sin, silu
from cli import check_flag
from safetensors_io import read_checkpoint, read_safetensors, write_safetensors

F64 = torch.float64
REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "test" / "fixtures" / "models" / "llama-gqa-f32"
OUT = REPO / "test" / "fixtures" / "train"
SEED = "20261125"

LENGTHS = [20, 13]
RQ = 383
RQ_POS = [(0, 11), (1, 8)]            # (sequence, position) of the retrieval tokens
PROMPT = [6, 4]                       # prompt lengths (not targets)
PARAGRAPH = [(0, 14, 17)]             # (sequence, start, end): injected span, not targets
DOCS = [5, 17, 24, 31]                # hidden rows of document tokens
PAIRS = [(11, 1, [2]), (28, 3, [0]), (28, 2, [])]   # (anchor row, positive doc, hard negatives)
TAU = 0.1
LAMBDA_GEN = 1.0
LAMBDA_RET = 0.5
LORA_R = 4
LORA_ALPHA = 8.0
MODULES = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]


def make_batch() -> Tuple[List[int], List[int], List[int]]:
    rng = random.Random(f"{SEED}/batch/ids")
    ids = [rng.randrange(3, 380) for _ in range(sum(LENGTHS))]
    starts = [sum(LENGTHS[:i]) for i in range(len(LENGTHS))]
    for s, p in RQ_POS:
        ids[starts[s] + p] = RQ
    target = [0] * len(ids)
    for s, n in enumerate(LENGTHS):
        for p in range(PROMPT[s], n):
            target[starts[s] + p] = 1
    for s, a, b in PARAGRAPH:
        for p in range(a, b):
            target[starts[s] + p] = 0
    labels = [-1] * len(ids)
    for s, n in enumerate(LENGTHS):
        for p in range(n - 1):
            t = starts[s] + p
            if target[t + 1] and ids[t] != RQ:
                labels[t] = ids[t + 1]
    return ids, target, labels


def forward(w: Dict[str, torch.Tensor], spec, ids: List[int], lora: Optional[Dict[str, Tuple[torch.Tensor, torch.Tensor]]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Packed-batch forward -> (logits [T, V], hidden [T, D])."""
    hd, nh, nkv = spec.head_dim, spec.num_heads, spec.num_kv_heads
    group = nh // nkv
    T = len(ids)
    pos = torch.cat([torch.arange(n) for n in LENGTHS])
    seq = torch.cat([torch.full((n,), i) for i, n in enumerate(LENGTHS)])
    allowed = (seq[None, :] == seq[:, None]) & (torch.arange(T)[None, :] <= torch.arange(T)[:, None])
    cos, sin = rope_cos_sin(inv_freq_for(spec.rope, hd), pos)
    scale = LORA_ALPHA / LORA_R

    def proj(name: str, x: torch.Tensor) -> torch.Tensor:
        y = x @ w[name + ".weight"].T
        if lora is not None and name in lora:
            a, b = lora[name]
            y = y + scale * ((x @ a.T) @ b.T)
        return y

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for li in range(spec.num_layers):
        p = f"model.layers.{li}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], spec.rms_norm_eps)
        q = apply_rope(proj(p + "self_attn.q_proj", h).view(T, nh, hd), cos, sin)
        k = apply_rope(proj(p + "self_attn.k_proj", h).view(T, nkv, hd), cos, sin)
        v = proj(p + "self_attn.v_proj", h).view(T, nkv, hd)
        heads = []
        for hh in range(nh):
            g = hh // group
            scores = (q[:, hh, :] @ k[:, g, :].T) / math.sqrt(hd)
            scores = scores.masked_fill(~allowed, float("-inf"))
            heads.append(torch.softmax(scores, dim=-1) @ v[:, g, :])
        x = x + proj(p + "self_attn.o_proj", torch.cat(heads, dim=-1))
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], spec.rms_norm_eps)
        x = x + proj(p + "mlp.down_proj", silu(proj(p + "mlp.gate_proj", h)) * proj(p + "mlp.up_proj", h))
    hidden = rms_norm(x, w["model.norm.weight"], spec.rms_norm_eps)
    return hidden @ w["lm_head.weight"].T, hidden


def candidates(i: int) -> List[int]:
    anchor, pos, negs = PAIRS[i]
    c = [pos] + [n for n in negs if n != pos]
    excluded = {q[1] for q in PAIRS if q[0] == anchor}
    c += [j for j in range(len(DOCS)) if j not in c and j not in excluded]
    return c


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


def losses(logits: torch.Tensor, hidden: torch.Tensor, labels: List[int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lab = torch.tensor(labels)
    m = lab >= 0
    lse = torch.logsumexp(logits[m], dim=-1)
    l_gen = (lse - logits[m].gather(1, lab[m][:, None])[:, 0]).mean()
    nce, bpr = [], []
    for i, (anchor, _, _) in enumerate(PAIRS):
        s = torch.stack([cosine(hidden[anchor], hidden[DOCS[j]]) for j in candidates(i)])
        nce.append(torch.logsumexp(s / TAU, dim=0) - s[0] / TAU)
        bpr.append(-torch.nn.functional.logsigmoid((s[0] - s[1:]) / TAU).mean())
    return l_gen, torch.stack(nce).mean(), torch.stack(bpr).mean()


def train_step(weights: Dict[str, torch.Tensor], spec, ids: List[int], labels: List[int], use_lora: bool):
    w = {k: v.to(F64).clone().requires_grad_(not use_lora) for k, v in weights.items()}
    lora = None
    if use_lora:
        lora = {}
        for li in range(spec.num_layers):
            for parent, mod in MODULES:
                name = f"model.layers.{li}.{parent}.{mod}"
                n, kdim = w[name + ".weight"].shape
                rng = random.Random(f"{SEED}/lora/{name}")
                bound = 1 / math.sqrt(kdim)
                a = torch.tensor([rng.uniform(-bound, bound) for _ in range(LORA_R * kdim)], dtype=torch.float32).view(LORA_R, kdim)
                b = torch.tensor([rng.gauss(0, 0.05) for _ in range(n * LORA_R)], dtype=torch.float32).view(n, LORA_R)
                lora[name] = (a.to(F64).requires_grad_(True), b.to(F64).requires_grad_(True))
    logits, hidden = forward(w, spec, ids, lora)
    l_gen, l_ret, l_bpr = losses(logits, hidden, labels)
    (LAMBDA_GEN * l_gen + LAMBDA_RET * l_ret).backward()
    out: Dict[str, torch.Tensor] = {}
    if use_lora:
        for name, (a, b) in lora.items():
            out[f"lora.{name}.A"] = a.detach().float()
            out[f"lora.{name}.B"] = b.detach().float()
            out[f"lora_grad.{name}.A"] = a.grad.float()
            out[f"lora_grad.{name}.B"] = b.grad.float()
    else:
        for name, t in w.items():
            out[f"grad.{name}"] = t.grad.float()
    pre = "lora_" if use_lora else ""
    out[pre + "loss"] = torch.stack([l_gen, l_ret, l_bpr]).detach()   # F64 [3]
    return out


def adamw_golden() -> Dict[str, torch.Tensor]:
    rng = random.Random(f"{SEED}/adamw")
    def rand(shape, s):
        n = 1
        for d in shape:
            n *= d
        return torch.tensor([rng.gauss(0, s) for _ in range(n)], dtype=torch.float32).view(*shape).to(F64)
    w0, b0 = rand((37,), 1.0), rand((5, 3), 1.0)
    grads = [(rand((37,), 0.5), rand((5, 3), 0.5)), (rand((37,), 0.1), rand((5, 3), 0.1))]
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    out = {"w0": w0, "b0": b0}
    for k, (gw, gb) in enumerate(grads):
        for grp in opt.param_groups:
            grp["lr"] = [1e-2, 5e-3][k]
        w.grad, b.grad = gw.clone(), gb.clone()
        norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm=1.0)
        opt.step()
        out[f"gw{k}"], out[f"gb{k}"] = gw, gb
        out[f"w{k + 1}"], out[f"b{k + 1}"] = w.detach().clone(), b.detach().clone()
        out[f"norm{k}"] = norm.detach().reshape(1).to(F64)
    return out


def generate(out_dir: Path) -> None:
    cfg = json.loads((MODEL / "config.json").read_text())
    spec = model_spec_from_config(cfg)
    weights = read_checkpoint(MODEL)
    ids, target, labels = make_batch()
    step = {
        "ids": torch.tensor(ids, dtype=torch.int32),
        "target": torch.tensor(target, dtype=torch.int32),
        "labels": torch.tensor(labels, dtype=torch.int32),
        "lengths": torch.tensor(LENGTHS, dtype=torch.int32),
    }
    step.update(train_step(weights, spec, ids, labels, use_lora=False))
    step.update(train_step(weights, spec, ids, labels, use_lora=True))
    meta = {
        "script": "scripts/golden/train_step.py",
        "model": "test/fixtures/models/llama-gqa-f32",
        "torch_version": torch.__version__,
        "spec": json.dumps({"rq": RQ, "docs": DOCS, "pairs": [list(p) for p in PAIRS], "tau": TAU,
                            "lambda_gen": LAMBDA_GEN, "lambda_ret": LAMBDA_RET, "lora_r": LORA_R,
                            "lora_alpha": LORA_ALPHA}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_dir / "step.safetensors", step, meta)
    write_safetensors(out_dir / "adamw.safetensors", adamw_golden(),
                      {"script": "scripts/golden/train_step.py", "torch_version": torch.__version__})
    # Self-check: the file reads back equal.
    back, _ = read_safetensors(out_dir / "step.safetensors")
    for k, v in step.items():
        if not torch.equal(back[k], v):
            raise RuntimeError(f"step.safetensors: {k} does not read back equal")


def main() -> int:
    check = check_flag(__doc__)
    if check:
        with tempfile.TemporaryDirectory() as d:
            generate(Path(d))
            for f in ("step.safetensors", "adamw.safetensors"):
                if (Path(d) / f).read_bytes() != (OUT / f).read_bytes():
                    print(f"{f}: differs from the committed fixture")
                    return 1
        print("fixtures match")
        return 0
    generate(OUT)
    print(f"wrote {OUT}/step.safetensors, {OUT}/adamw.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
