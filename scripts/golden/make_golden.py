#!/usr/bin/python3
"""Generate the model-parity fixtures in test/fixtures/models/ (issue 6, section 6).

Each fixture is a tiny random Hugging Face style checkpoint (config.json + safetensors weights in
F32, F16 or BF16, optionally sharded with model.safetensors.index.json) and golden.safetensors:
  ids     I32 [T]          token ids (random, seeded)
  logits  F32 [T, vocab]   logits of a full causal forward over ids
  hidden  F32 [T, hidden]  final-norm hidden states (after model.norm, before lm_head)
computed by the independent float64 reference in reference.py from the weights exactly as stored
(the F16/BF16 files are read back, so the runtime sees the same values).

Usage (Debian's PyTorch; the pyenv `python3` on PATH has no torch):
  /usr/bin/python3 scripts/golden/make_golden.py            # (re)write the fixtures
  /usr/bin/python3 scripts/golden/make_golden.py --check    # regenerate in a temp dir, compare bytes

Deterministic: weights and ids come from Python's `random.Random` seeded by a string
(f"{SEED}/{fixture}/{tensor}"), which is stable across Python versions and platforms; files are
written with sorted keys and fixed layouts, so a rerun gives identical bytes.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # keep scripts/golden free of __pycache__

import hashlib
import json
import math
import random
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

from reference import (ModelSpec, ReferenceModel, RopeSpec, default_inv_freq, inv_freq_for,
                       llama3_inv_freq, llama3_inv_freq_loop, model_spec_from_config)
from cli import check_flag
from safetensors_io import read_checkpoint, read_safetensors, serialize, write_safetensors

SEED = 20240611
T = 40
SCRIPT = "scripts/golden/make_golden.py"
REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "test" / "fixtures" / "models"

STORAGE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TORCH_DTYPE_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


# ----------------------------------------------------------------------------------------------
# config.json builders: the keys transformers writes for each model type (to_json_string:
# indent 2, sorted keys). v4 layout unless noted.


def base_config(*, arch, model_type, hidden, layers, heads, kv_heads, inter, vocab, tie, max_pos, eps,
                bos, eos) -> Dict[str, object]:
    """The keys every architecture's config.json shares."""
    return {
        "architectures": [arch],
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "model_type": model_type,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": eps,
        "tie_word_embeddings": tie,
        "use_cache": True,
        "vocab_size": vocab,
    }


def llama_config_v4(*, hidden, layers, heads, kv_heads, inter, vocab, dtype, tie, rope_theta,
                    max_pos, eps, bos, eos, rope_scaling=None, head_dim=None) -> Dict[str, object]:
    cfg = base_config(arch="LlamaForCausalLM", model_type="llama", hidden=hidden, layers=layers, heads=heads,
                      kv_heads=kv_heads, inter=inter, vocab=vocab, tie=tie, max_pos=max_pos, eps=eps, bos=bos, eos=eos)
    cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1, "rope_scaling": rope_scaling,
                "rope_theta": rope_theta, "torch_dtype": dtype, "transformers_version": "4.46.3"})
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    return cfg


def llama_config_v5(*, hidden, layers, heads, kv_heads, inter, vocab, dtype, tie, rope_parameters,
                    max_pos, eps, bos, eos) -> Dict[str, object]:
    """transformers >= 5 layout: `rope_parameters` replaces top-level rope_theta/rope_scaling,
    `dtype` replaces `torch_dtype`, head_dim and pad_token_id are always written."""
    cfg = base_config(arch="LlamaForCausalLM", model_type="llama", hidden=hidden, layers=layers, heads=heads,
                      kv_heads=kv_heads, inter=inter, vocab=vocab, tie=tie, max_pos=max_pos, eps=eps, bos=bos, eos=eos)
    cfg.update({"attention_bias": False, "dtype": dtype, "head_dim": hidden // heads, "mlp_bias": False,
                "pad_token_id": None, "pretraining_tp": 1, "rope_parameters": rope_parameters,
                "transformers_version": "5.0.0"})
    return cfg


def qwen2_config(*, hidden, layers, heads, kv_heads, inter, vocab, dtype, tie, rope_theta, max_pos,
                 eps, bos, eos) -> Dict[str, object]:
    # Qwen2.5 style: sliding_window is set but disabled by use_sliding_window=false.
    cfg = base_config(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=hidden, layers=layers, heads=heads,
                      kv_heads=kv_heads, inter=inter, vocab=vocab, tie=tie, max_pos=max_pos, eps=eps, bos=bos, eos=eos)
    cfg.update({"max_window_layers": layers, "rope_scaling": None, "rope_theta": rope_theta, "sliding_window": 32768,
                "torch_dtype": dtype, "transformers_version": "4.46.3", "use_sliding_window": False})
    return cfg


def mistral_config(*, hidden, layers, heads, kv_heads, inter, vocab, dtype, tie, rope_theta, max_pos,
                   eps, bos, eos, head_dim) -> Dict[str, object]:
    cfg = base_config(arch="MistralForCausalLM", model_type="mistral", hidden=hidden, layers=layers, heads=heads,
                      kv_heads=kv_heads, inter=inter, vocab=vocab, tie=tie, max_pos=max_pos, eps=eps, bos=bos, eos=eos)
    cfg.update({"head_dim": head_dim, "rope_theta": rope_theta, "sliding_window": None, "torch_dtype": dtype,
                "transformers_version": "4.46.3"})
    return cfg


# ----------------------------------------------------------------------------------------------
# Fixture definitions


def fixture(name: str, storage: str, config: Dict[str, object], bias: bool = False,
            max_shard_bytes: int = 0, expect_shards: int = 1) -> Dict[str, object]:
    """One fixture: its name, weight storage dtype, bias flag, shard cut and config."""
    fx: Dict[str, object] = {"name": name, "storage": storage, "max_shard_bytes": max_shard_bytes, "bias": bias,
                             "config": config}
    if expect_shards != 1:
        fx["expect_shards"] = expect_shards
    return fx


def fixtures() -> List[Dict[str, object]]:
    return [
        fixture("llama-gqa-f32", "F32",
                llama_config_v4(hidden=64, layers=2, heads=4, kv_heads=2, inter=160, vocab=384,
                                dtype="float32", tie=False, rope_theta=10000.0, max_pos=128,
                                eps=1e-5, bos=1, eos=2)),
        # 2 shards; the cut falls inside layer 1 (attention in shard 1, MLP in shard 2)
        fixture("llama3-scaled-bf16-sharded", "BF16",
                llama_config_v4(hidden=96, layers=2, heads=8, kv_heads=2, inter=224, vocab=500,
                                dtype="bfloat16", tie=False, rope_theta=500000.0, max_pos=512,
                                eps=1e-5, bos=1, eos=[2, 3, 4],
                                rope_scaling={"factor": 8.0, "high_freq_factor": 4.0,
                                              "low_freq_factor": 1.0,
                                              "original_max_position_embeddings": 64,
                                              "rope_type": "llama3"}),
                max_shard_bytes=330000, expect_shards=2),
        fixture("qwen2-bias-tied-f16", "F16",
                qwen2_config(hidden=64, layers=2, heads=4, kv_heads=4, inter=128, vocab=320,
                             dtype="float16", tie=True, rope_theta=1000000.0, max_pos=256,
                             eps=1e-6, bos=300, eos=301),
                bias=True),
        fixture("mistral-headdim-gqa7-f16", "F16",
                mistral_config(hidden=56, layers=2, heads=7, kv_heads=1, inter=112, vocab=300,
                               dtype="float16", tie=False, rope_theta=1000000.0, max_pos=256,
                               eps=1e-5, bos=1, eos=2, head_dim=24)),
        fixture("llama-linear-ropeparams-f16", "F16",
                llama_config_v5(hidden=64, layers=2, heads=4, kv_heads=1, inter=96, vocab=256,
                                dtype="float16", tie=False,
                                rope_parameters={"factor": 2.0, "rope_theta": 10000.0,
                                                 "rope_type": "linear"},
                                max_pos=256, eps=1e-5, bos=1, eos=2)),
    ]


# ----------------------------------------------------------------------------------------------
# Random weights


def gaussian(key: str, shape: Tuple[int, ...], mean: float, std: float) -> torch.Tensor:
    rng = random.Random(f"{SEED}/{key}")
    n = 1
    for s in shape:
        n *= s
    vals = [rng.gauss(mean, std) for _ in range(n)]
    return torch.tensor(vals, dtype=torch.float64).reshape(shape)


def make_weights(name: str, spec: ModelSpec, bias: bool) -> Dict[str, torch.Tensor]:
    """float64 weights in HF state-dict order. Scales (per input feature fan-in `n`):
    q/k 1.5/sqrt(n) so attention is peaked (RoPE errors show), v/o/gate/up/down 1/sqrt(n),
    lm_head (or tied embedding) 2.5/sqrt(D) so logits have std ~2.5, norms 1 + N(0, 0.1),
    q/k/v biases N(0, 0.3)."""
    d, f, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    qd, kvd = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    g: Callable[..., torch.Tensor] = lambda key, shape, mean, std: gaussian(f"{name}/{key}", shape, mean, std)
    w: Dict[str, torch.Tensor] = {}
    embed_std = 2.5 / math.sqrt(d) if spec.tie_word_embeddings else 1.0
    w["model.embed_tokens.weight"] = g("embed", (v, d), 0.0, embed_std)
    for i in range(spec.num_layers):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = g(p + "q", (qd, d), 0.0, 1.5 / math.sqrt(d))
        if bias:
            w[p + "self_attn.q_proj.bias"] = g(p + "qb", (qd,), 0.0, 0.3)
        w[p + "self_attn.k_proj.weight"] = g(p + "k", (kvd, d), 0.0, 1.5 / math.sqrt(d))
        if bias:
            w[p + "self_attn.k_proj.bias"] = g(p + "kb", (kvd,), 0.0, 0.3)
        w[p + "self_attn.v_proj.weight"] = g(p + "v", (kvd, d), 0.0, 1.0 / math.sqrt(d))
        if bias:
            w[p + "self_attn.v_proj.bias"] = g(p + "vb", (kvd,), 0.0, 0.3)
        w[p + "self_attn.o_proj.weight"] = g(p + "o", (d, qd), 0.0, 1.0 / math.sqrt(qd))
        w[p + "mlp.gate_proj.weight"] = g(p + "gate", (f, d), 0.0, 1.0 / math.sqrt(d))
        w[p + "mlp.up_proj.weight"] = g(p + "up", (f, d), 0.0, 1.0 / math.sqrt(d))
        w[p + "mlp.down_proj.weight"] = g(p + "down", (d, f), 0.0, 1.0 / math.sqrt(f))
        w[p + "input_layernorm.weight"] = g(p + "ln1", (d,), 1.0, 0.1)
        w[p + "post_attention_layernorm.weight"] = g(p + "ln2", (d,), 1.0, 0.1)
    w["model.norm.weight"] = g("norm", (d,), 1.0, 0.1)
    if not spec.tie_word_embeddings:
        w["lm_head.weight"] = g("lm_head", (v, d), 0.0, 2.5 / math.sqrt(d))
    return w


def make_ids(name: str, vocab: int) -> torch.Tensor:
    rng = random.Random(f"{SEED}/{name}/ids")
    return torch.tensor([rng.randrange(vocab) for _ in range(T)], dtype=torch.int32)


# ----------------------------------------------------------------------------------------------
# Writing


def dump_json(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_weights(fdir: Path, weights: Dict[str, torch.Tensor], storage: str,
                  max_shard_bytes: int) -> None:
    """Write model.safetensors, or (max_shard_bytes > 0) shards split as save_pretrained does:
    tensors in state-dict order, a new shard starts when the next tensor would overflow the limit."""
    stored = {k: v.to(STORAGE[storage]) for k, v in weights.items()}
    meta = {"format": "pt"}
    if max_shard_bytes <= 0:
        write_safetensors(fdir / "model.safetensors", stored, meta)
        return
    groups: List[List[str]] = [[]]
    acc = 0
    total = 0
    for n, t in stored.items():
        sz = t.numel() * t.element_size()
        if groups[-1] and acc + sz > max_shard_bytes:
            groups.append([])
            acc = 0
        groups[-1].append(n)
        acc += sz
        total += sz
    shards = len(groups)
    weight_map: Dict[str, str] = {}
    for i, grp in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(fdir / fname, {n: stored[n] for n in grp}, meta)
        for n in grp:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (fdir / "model.safetensors.index.json").write_text(dump_json(index))


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def build_fixture(fx: Dict[str, object], out_dir: Path, log: Callable[[str], None]) -> None:
    name = str(fx["name"])
    cfg = fx["config"]
    assert isinstance(cfg, dict)
    fdir = out_dir / name
    fdir.mkdir(parents=True, exist_ok=True)
    for old in fdir.glob("*"):
        old.unlink()
    (fdir / "config.json").write_text(dump_json(cfg))
    spec = model_spec_from_config(json.loads((fdir / "config.json").read_text()))
    weights = make_weights(name, spec, bool(fx["bias"]))
    write_weights(fdir, weights, str(fx["storage"]), int(fx["max_shard_bytes"]))  # type: ignore[arg-type]
    shard_files = sorted(p.name for p in fdir.glob("model*.safetensors"))
    if len(shard_files) != int(fx.get("expect_shards", 1)):  # type: ignore[arg-type]
        raise RuntimeError(f"{name}: wrote {shard_files}, expected {fx.get('expect_shards', 1)} file(s)")

    # --- reference on the values exactly as stored (read back through our own reader) ---
    stored = read_checkpoint(fdir)
    if set(stored) != set(weights):
        raise RuntimeError(f"{name}: read back tensor names differ from written")
    for k, t in stored.items():
        if t.dtype != STORAGE[str(fx["storage"])]:
            raise RuntimeError(f"{name}: {k} read back as {t.dtype}")
        if not torch.equal(t, weights[k].to(t.dtype)):
            raise RuntimeError(f"{name}: {k} read back differs from written")
    model = ReferenceModel(spec, stored)
    ids = make_ids(name, spec.vocab_size)
    logits, hidden, _ = model.forward(ids)

    golden = {"ids": ids, "logits": logits.to(torch.float32), "hidden": hidden.to(torch.float32)}
    meta = {
        "script": SCRIPT,
        "seed": str(SEED),
        "fixture": name,
        "reference": "float64 PyTorch reimplementation (scripts/golden/reference.py)",
        "torch_version": torch.__version__,
    }
    write_safetensors(fdir / "golden.safetensors", golden, meta)

    # --- self-checks ---
    g_back, g_meta = read_safetensors(fdir / "golden.safetensors")
    if g_meta != meta or set(g_back) != set(golden):
        raise RuntimeError(f"{name}: golden metadata/names read back wrong")
    for k, t in golden.items():
        if not torch.equal(g_back[k], t):
            raise RuntimeError(f"{name}: golden {k} read back differs")
    for path in sorted(fdir.glob("*.safetensors")):
        tensors, m = read_safetensors(path)
        if serialize(tensors, m) != path.read_bytes():
            raise RuntimeError(f"{path}: re-serialization is not byte-identical")

    # KV-cache decode == full forward: token by token, and a mixed prefill/decode schedule.
    inc_l, inc_h = model.forward_chunks(ids, [1] * T)
    mix_l, mix_h = model.forward_chunks(ids, [13, 1, 1, 9, 1, 15])
    kv_err = max(rel_l2(inc_l, logits), rel_l2(inc_h, hidden), rel_l2(mix_l, logits), rel_l2(mix_h, hidden))
    if kv_err > 1e-12:
        raise RuntimeError(f"{name}: incremental decode differs from full forward, rel L2 {kv_err:.3e}")

    # Sensitivity: the goldens must move when the RoPE frequencies or the GQA mapping change.
    def logits_with(s: ModelSpec) -> torch.Tensor:
        return ReferenceModel(s, stored).forward(ids)[0]

    no_scaling = replace(spec, rope=RopeSpec("default", spec.rope.theta, {}))
    rope_sens = rel_l2(logits_with(no_scaling), logits) if spec.rope.rope_type != "default" else float("nan")
    other_theta = replace(spec, rope=replace(spec.rope, theta=spec.rope.theta * 2))
    theta_sens = rel_l2(logits_with(other_theta), logits)
    if spec.rope.rope_type != "default" and not rope_sens > 1e-2:
        raise RuntimeError(f"{name}: logits barely depend on rope scaling (rel L2 {rope_sens:.3e})")
    if not theta_sens > 1e-3:
        raise RuntimeError(f"{name}: logits barely depend on rope_theta (rel L2 {theta_sens:.3e})")

    # What plain f32 arithmetic on the same stored weights costs (a floor for runtime tolerances).
    l32, h32, _ = ReferenceModel(spec, stored, torch.float32).forward(ids)
    f32_err = max(rel_l2(l32.to(torch.float64), logits), rel_l2(h32.to(torch.float64), hidden))

    probs = torch.softmax(logits, dim=-1)
    top = probs.max(dim=-1).values
    log(f"{name}: head_dim {spec.head_dim}, rope {spec.rope.rope_type}, "
        f"logits std {float(logits.std()):.3f}, mean top-1 prob {float(top.mean()):.3f} "
        f"(min {float(top.min()):.3f}, max {float(top.max()):.3f}), "
        f"kv-cache rel L2 {kv_err:.1e}, rel L2 change without scaling {rope_sens:.3f}, "
        f"with theta*2 {theta_sens:.3f}, f32-arithmetic rel L2 {f32_err:.1e}")
    if not 0.02 < float(top.mean()) < 0.9:
        raise RuntimeError(f"{name}: degenerate logits (mean top-1 prob {float(top.mean()):.3f})")


def check_rope_helpers(log: Callable[[str], None]) -> None:
    """HF's vectorised llama3 formula == Meta's loop, and the llama3 fixture exercises all three
    regimes (kept, smoothly interpolated, divided by factor) within head_dim 12."""
    base = default_inv_freq(500000.0, 12)
    args = (8.0, 1.0, 4.0, 64.0)
    vec, loop = llama3_inv_freq(base, *args), llama3_inv_freq_loop(base, *args)
    if not torch.allclose(vec, loop, rtol=1e-15, atol=0):
        raise RuntimeError(f"llama3 inv_freq: vectorised {vec.tolist()} != loop {loop.tolist()}")
    ratio = (base / vec).tolist()
    kept = sum(1 for r in ratio if abs(r - 1) < 1e-12)
    divided = sum(1 for r in ratio if abs(r - 8) < 1e-9)
    medium = len(ratio) - kept - divided
    if not (kept and divided and medium):
        raise RuntimeError(f"llama3 fixture does not hit all regimes: base/scaled = {ratio}")
    log(f"llama3 inv_freq (theta 5e5, hd 12): base/scaled = {[round(r, 4) for r in ratio]} "
        f"(kept {kept}, interpolated {medium}, divided {divided})")
    lin = inv_freq_for(RopeSpec("linear", 10000.0, {"factor": 2.0}), 16)
    if not torch.equal(lin, default_inv_freq(10000.0, 16) / 2.0):
        raise RuntimeError("linear inv_freq wrong")


def generate(out_dir: Path, log: Callable[[str], None]) -> None:
    check_rope_helpers(log)
    out_dir.mkdir(parents=True, exist_ok=True)
    for fx in fixtures():
        build_fixture(fx, out_dir, log)


def digest_tree(root: Path, names: List[str]) -> Dict[str, str]:
    out = {}
    for n in names:
        for p in sorted((root / n).glob("*")):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> int:
    check = check_flag(__doc__)
    names = [str(fx["name"]) for fx in fixtures()]
    if check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), lambda s: None)
            fresh, committed = digest_tree(Path(tmp), names), digest_tree(OUT_DIR, names)
        if fresh != committed:
            for k in sorted(set(fresh) | set(committed)):
                if fresh.get(k) != committed.get(k):
                    print(f"DIFFERS: {k}", file=sys.stderr)
            return 1
        print(f"fixtures reproduce byte for byte ({len(fresh)} files)")
        return 0
    generate(OUT_DIR, print)
    total = 0
    for n in names:
        size = sum(p.stat().st_size for p in (OUT_DIR / n).glob("*"))
        total += size
        print(f"  {n}: {size} bytes")
    print(f"  total: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
