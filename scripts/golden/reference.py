"""Independent float64 reference of the Hugging Face Llama / Qwen2 / Mistral decoder forward.

Written from the model definitions (transformers' modeling_llama.py / modeling_qwen2.py /
modeling_mistral.py and modeling_rope_utils.py), not imported from them: transformers is not
installed here. Everything runs in torch.float64 on the CPU; weights are the values stored in the
checkpoint (F16/BF16/F32) converted exactly to float64.

Shapes (names as in the TypeScript runtime):
  T tokens in this call, P = past tokens in the cache, D = hidden_size, H heads, Hkv kv heads,
  hd = head_dim, F = intermediate_size, V = vocab_size.

Per layer, with x [T, D]:
  h   = rmsnorm(x, input_layernorm)                       rmsnorm(x, w) = x * rsqrt(mean(x^2) + eps) * w
  q   = h @ Wq^T (+ bq) -> [T, H, hd];  k, v = h @ Wk^T (+ bk), h @ Wv^T (+ bv) -> [T, Hkv, hd]
  q,k = rope(q), rope(k)                                   rotate-half layout (see apply_rope)
  a_h = softmax(q_h k_g^T / sqrt(hd) + causal) v_g         g = h // (H / Hkv)
  x   = x + concat_h(a_h) @ Wo^T
  h   = rmsnorm(x, post_attention_layernorm)
  x   = x + (silu(h @ Wg^T) * (h @ Wu^T)) @ Wd^T
then hidden = rmsnorm(x, model.norm), logits = hidden @ W_lm^T (W_lm = embed_tokens if tied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# Config


@dataclass
class RopeSpec:
    rope_type: str          # "default" | "linear" | "llama3"
    theta: float
    params: Dict[str, object] = field(default_factory=dict)  # factor, low_freq_factor, ...


@dataclass
class ModelSpec:
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    rope: RopeSpec


def rope_spec_from_config(cfg: Mapping[str, object]) -> RopeSpec:
    """Both layouts: transformers v4 (`rope_theta` + optional `rope_scaling`) and v5
    (`rope_parameters` holding rope_theta, rope_type and the scaling fields)."""
    rp = cfg.get("rope_parameters")
    if rp is not None:
        params = dict(rp)  # type: ignore[arg-type]
        theta = float(params.pop("rope_theta"))
    else:
        theta = float(cfg.get("rope_theta", 10000.0))  # type: ignore[arg-type]
        params = dict(cfg.get("rope_scaling") or {})  # type: ignore[arg-type]
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    return RopeSpec(rope_type=str(rope_type), theta=theta, params=params)


def model_spec_from_config(cfg: Mapping[str, object]) -> ModelSpec:
    arch = cfg["architectures"][0]  # type: ignore[index]
    d = int(cfg["hidden_size"])  # type: ignore[arg-type]
    h = int(cfg["num_attention_heads"])  # type: ignore[arg-type]
    hkv = int(cfg.get("num_key_value_heads") or h)  # type: ignore[arg-type]
    hd = int(cfg.get("head_dim") or d // h)  # type: ignore[arg-type]
    return ModelSpec(
        architecture=str(arch),
        hidden_size=d,
        intermediate_size=int(cfg["intermediate_size"]),  # type: ignore[arg-type]
        num_layers=int(cfg["num_hidden_layers"]),  # type: ignore[arg-type]
        num_heads=h,
        num_kv_heads=hkv,
        head_dim=hd,
        vocab_size=int(cfg["vocab_size"]),  # type: ignore[arg-type]
        rms_norm_eps=float(cfg["rms_norm_eps"]),  # type: ignore[arg-type]
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        rope=rope_spec_from_config(cfg),
    )


# ----------------------------------------------------------------------------------------------
# RoPE


def default_inv_freq(theta: float, dim: int) -> torch.Tensor:
    """inv_freq[i] = 1 / theta^(2i/dim), i = 0 .. dim/2-1   -> [dim/2] float64"""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=F64) / dim))


def llama3_inv_freq(inv_freq: torch.Tensor, factor: float, low_freq_factor: float,
                    high_freq_factor: float, old_context_len: float) -> torch.Tensor:
    """transformers' _compute_llama3_parameters, vectorised as there:
      wavelen = 2*pi / f
      wavelen <  old/high_freq_factor        -> f                 (high frequencies kept)
      wavelen >  old/low_freq_factor         -> f / factor        (low frequencies scaled)
      otherwise s = (old/wavelen - low) / (high - low), f' = (1 - s) * f / factor + s * f
    """
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def llama3_inv_freq_loop(inv_freq: torch.Tensor, factor: float, low_freq_factor: float,
                         high_freq_factor: float, old_context_len: float) -> torch.Tensor:
    """Meta's original per-frequency loop (llama-models apply_scaling); used only as a cross-check."""
    out = []
    for f in inv_freq.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old_context_len / high_freq_factor:
            out.append(f)
        elif wavelen > old_context_len / low_freq_factor:
            out.append(f / factor)
        else:
            s = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append((1 - s) * f / factor + s * f)
    return torch.tensor(out, dtype=F64)


def inv_freq_for(rope: RopeSpec, head_dim: int) -> torch.Tensor:
    base = default_inv_freq(rope.theta, head_dim)
    p = rope.params
    if rope.rope_type == "default":
        return base
    if rope.rope_type == "linear":
        return base / float(p["factor"])  # type: ignore[arg-type]
    if rope.rope_type == "llama3":
        return llama3_inv_freq(base, float(p["factor"]), float(p["low_freq_factor"]),  # type: ignore[arg-type]
                               float(p["high_freq_factor"]),  # type: ignore[arg-type]
                               float(p["original_max_position_embeddings"]))  # type: ignore[arg-type]
    raise NotImplementedError(f"rope_type {rope.rope_type!r} is not implemented in the reference")


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [T, hd]: emb = cat(freqs, freqs), freqs[t, i] = pos[t] * inv_freq[i]."""
    freqs = positions.to(inv_freq.dtype)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [T, nheads, hd]; cos/sin [T, hd] -> x*cos + rotate_half(x)*sin."""
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]


# ----------------------------------------------------------------------------------------------
# Forward


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))


def linear(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor] = None) -> torch.Tensor:
    y = x @ w.T
    return y + b if b is not None else y


@dataclass
class KVCache:
    """Post-RoPE keys and values per layer, each [Hkv, P, hd]."""
    keys: List[torch.Tensor]
    values: List[torch.Tensor]

    @property
    def length(self) -> int:
        return self.keys[0].shape[1] if self.keys else 0


class ReferenceModel:
    def __init__(self, spec: ModelSpec, weights: Mapping[str, torch.Tensor], dtype: torch.dtype = F64):
        """dtype is float64 for the goldens; float32 only to estimate what f32 arithmetic costs."""
        self.spec = spec
        self.dtype = dtype
        # Exact conversion of the stored F16/BF16/F32 values.
        self.w: Dict[str, torch.Tensor] = {k: v.to(dtype) for k, v in weights.items()}
        self.inv_freq = inv_freq_for(spec.rope, spec.head_dim).to(dtype)
        if spec.num_heads % spec.num_kv_heads != 0:
            raise ValueError(f"num_attention_heads {spec.num_heads} not a multiple of "
                             f"num_key_value_heads {spec.num_kv_heads}")

    def empty_cache(self) -> KVCache:
        s = self.spec
        z = torch.zeros((s.num_kv_heads, 0, s.head_dim), dtype=self.dtype)
        return KVCache([z] * s.num_layers, [z] * s.num_layers)

    def _get(self, name: str) -> Optional[torch.Tensor]:
        return self.w.get(name)

    def forward(self, ids: torch.Tensor, cache: Optional[KVCache] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, KVCache]:
        """ids [T] at positions P .. P+T-1 after the cache -> (logits [T, V], hidden [T, D], cache')."""
        s = self.spec
        if cache is None:
            cache = self.empty_cache()
        past = cache.length
        t = ids.shape[0]
        hd, nh, nkv = s.head_dim, s.num_heads, s.num_kv_heads
        group = nh // nkv
        positions = torch.arange(past, past + t)
        cos, sin = rope_cos_sin(self.inv_freq, positions)
        # causal mask over [T, P+T]: query i (absolute past+i) sees key j iff j <= past+i
        key_pos = torch.arange(past + t)
        allowed = key_pos[None, :] <= positions[:, None]

        x = self.w["model.embed_tokens.weight"][ids.long()]  # [T, D]
        new_keys, new_values = [], []
        for li in range(s.num_layers):
            p = f"model.layers.{li}."
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], s.rms_norm_eps)
            q = linear(h, self.w[p + "self_attn.q_proj.weight"], self._get(p + "self_attn.q_proj.bias"))
            k = linear(h, self.w[p + "self_attn.k_proj.weight"], self._get(p + "self_attn.k_proj.bias"))
            v = linear(h, self.w[p + "self_attn.v_proj.weight"], self._get(p + "self_attn.v_proj.bias"))
            q = apply_rope(q.view(t, nh, hd), cos, sin)
            k = apply_rope(k.view(t, nkv, hd), cos, sin)
            v = v.view(t, nkv, hd)
            keys = torch.cat([cache.keys[li], k.transpose(0, 1)], dim=1)     # [Hkv, P+T, hd]
            values = torch.cat([cache.values[li], v.transpose(0, 1)], dim=1)
            new_keys.append(keys)
            new_values.append(values)
            heads = []
            for hh in range(nh):
                g = hh // group
                scores = (q[:, hh, :] @ keys[g].T) / math.sqrt(hd)          # [T, P+T]
                scores = scores.masked_fill(~allowed, float("-inf"))
                probs = torch.softmax(scores, dim=-1)
                heads.append(probs @ values[g])                               # [T, hd]
            attn = torch.cat(heads, dim=-1)                                   # [T, H*hd]
            x = x + linear(attn, self.w[p + "self_attn.o_proj.weight"])
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], s.rms_norm_eps)
            gate = linear(h, self.w[p + "mlp.gate_proj.weight"])
            up = linear(h, self.w[p + "mlp.up_proj.weight"])
            x = x + linear(silu(gate) * up, self.w[p + "mlp.down_proj.weight"])
        hidden = rms_norm(x, self.w["model.norm.weight"], s.rms_norm_eps)
        lm = self.w["model.embed_tokens.weight"] if s.tie_word_embeddings else self.w["lm_head.weight"]
        logits = hidden @ lm.T
        return logits, hidden, KVCache(new_keys, new_values)

    def forward_chunks(self, ids: torch.Tensor, chunk_sizes: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run ids through the KV cache in consecutive chunks; concatenated (logits, hidden)."""
        if sum(chunk_sizes) != ids.shape[0]:
            raise ValueError(f"chunk sizes {chunk_sizes} do not sum to {ids.shape[0]}")
        cache = None
        outs_l, outs_h = [], []
        start = 0
        for n in chunk_sizes:
            lg, hs, cache = self.forward(ids[start:start + n], cache)
            outs_l.append(lg)
            outs_h.append(hs)
            start += n
        return torch.cat(outs_l), torch.cat(outs_h)
