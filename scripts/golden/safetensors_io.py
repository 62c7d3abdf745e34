"""Minimal safetensors writer and reader (no `safetensors` package needed).

File layout (https://github.com/huggingface/safetensors, "Format"):
  8 bytes   N, unsigned little-endian: length of the JSON header in bytes
  N bytes   JSON header, UTF-8, padded with spaces so that 8 + N is a multiple of 8:
              {"__metadata__": {str: str, ...},              (optional)
               "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
  rest      the byte buffer; data_offsets are relative to its start, tensors are contiguous,
            little-endian, row-major, with no gaps.

The writer orders tensors by name (byte offsets ascending in that order) and emits compact JSON
with `__metadata__` first, so the same tensors always give the same bytes. The reader validates
everything it can (header bounds, dtype names, byte counts against shapes, contiguity, no overlap)
and raises ValueError naming the file and tensor on any mismatch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch

# safetensors dtype name -> (torch dtype, bytes per element)
DTYPES: Dict[str, Tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
TORCH_TO_NAME = {tdt: name for name, (tdt, _) in DTYPES.items()}

# Integer dtype of the same width, used to move raw bits in and out of torch without numpy
# (numpy has no bfloat16).
_SAME_WIDTH_INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a tensor in row-major order (the machine must be little-endian)."""
    t = t.detach().contiguous().cpu()
    if t.dtype in _SAME_WIDTH_INT:
        t = t.view(_SAME_WIDTH_INT[t.dtype])
    return t.numpy().tobytes()


def tensor_from_bytes(buf: bytes, dtype_name: str, shape: Tuple[int, ...]) -> torch.Tensor:
    tdt, _ = DTYPES[dtype_name]
    raw_dt = _SAME_WIDTH_INT.get(tdt, tdt)
    n = 1
    for s in shape:
        n *= s
    if n == 0:
        return torch.empty(shape, dtype=tdt)
    flat = torch.frombuffer(bytearray(buf), dtype=raw_dt).clone()
    if raw_dt != tdt:
        flat = flat.view(tdt)
    return flat.reshape(shape)


def serialize(tensors: Mapping[str, torch.Tensor], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """Serialize named tensors (dtype taken from each tensor) into safetensors bytes."""
    header: Dict[str, object] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"__metadata__ must map str to str, got {k!r}: {v!r}")
        header["__metadata__"] = dict(sorted(metadata.items()))
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("tensor name '__metadata__' is reserved")
        t = tensors[name]
        if t.dtype not in TORCH_TO_NAME:
            raise ValueError(f"tensor {name}: unsupported dtype {t.dtype}")
        data = tensor_bytes(t)
        header[name] = {
            "dtype": TORCH_TO_NAME[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor],
                      metadata: Optional[Mapping[str, str]] = None) -> int:
    """Write a safetensors file; returns the number of tensor-data bytes (for index total_size)."""
    data = serialize(tensors, metadata)
    Path(path).write_bytes(data)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Read a safetensors file into {name: tensor} (stored dtype kept) and its metadata."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(raw)}")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    for k, v in metadata.items():
        if not isinstance(v, str):
            raise ValueError(f"{path}: __metadata__[{k!r}] is not a string")
    spans = []
    out: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dtype_name = info.get("dtype")
        if dtype_name not in DTYPES:
            raise ValueError(f"{path}: tensor {name}: unknown dtype {dtype_name!r}")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        want = count * DTYPES[dtype_name][1]
        if end - begin != want:
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes for shape {list(shape)} "
                             f"{dtype_name}, expected {want}")
        if begin < 0 or end > len(data):
            raise ValueError(f"{path}: tensor {name}: offsets [{begin}, {end}] outside data of {len(data)} bytes")
        spans.append((begin, end, name))
        out[name] = tensor_from_bytes(data[begin:end], dtype_name, shape)
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise ValueError(f"{path}: tensor {name} starts at {begin}, expected {pos} (gap or overlap)")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: tensors cover {pos} bytes of a {len(data)}-byte data section")
    return out, dict(metadata)


def read_checkpoint(model_dir: Path) -> Dict[str, torch.Tensor]:
    """Read model.safetensors, or every shard named by model.safetensors.index.json."""
    model_dir = Path(model_dir)
    index_path = model_dir / "model.safetensors.index.json"
    if not index_path.exists():
        tensors, _ = read_safetensors(model_dir / "model.safetensors")
        return tensors
    index = json.loads(index_path.read_text())
    weight_map: Dict[str, str] = index["weight_map"]
    out: Dict[str, torch.Tensor] = {}
    total = 0
    for shard in sorted(set(weight_map.values())):
        tensors, _ = read_safetensors(model_dir / shard)
        for name, t in tensors.items():
            if weight_map.get(name) != shard:
                raise ValueError(f"{model_dir / shard}: tensor {name} not mapped to this shard in the index")
            out[name] = t
            total += t.numel() * t.element_size()
    missing = set(weight_map) - set(out)
    if missing:
        raise ValueError(f"{index_path}: tensors missing from shards: {sorted(missing)}")
    if index.get("metadata", {}).get("total_size") != total:
        raise ValueError(f"{index_path}: total_size {index.get('metadata', {}).get('total_size')} != {total}")
    return out
