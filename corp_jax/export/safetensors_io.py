"""Reading and writing the safetensors format with NumPy alone (no `safetensors` package).

Contract:
  `save_file(tensors: {name: np.ndarray}, path, metadata: {str: str} | None)` writes
  `path` atomically (a temporary file renamed into place);
  `load_file(path) -> {name: np.ndarray}` reads it (float32/float64/float16/int64/int32/uint8/
  bool), raising ValueError naming the file when it is not a safetensors file.
Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
N bytes of JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {}}`
(padded with spaces to a multiple of 8), then the little-endian C-order tensor bytes. Files
written here load with `safetensors.torch.load_file` (tested when that package is installed).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Mapping

import numpy as np

_CODES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
          np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8",
          np.dtype("bool"): "BOOL"}
_DTYPES = {code: dtype for dtype, code in _CODES.items()}


def save_file(tensors: Mapping[str, np.ndarray], path: str,
              metadata: Mapping[str, str] | None = None) -> None:
  header: dict = {}
  if metadata:
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
  blobs, offset = [], 0
  for name in sorted(tensors):
    array = np.asarray(tensors[name])
    if array.dtype not in _CODES:
      raise ValueError(f"safetensors: {name!r} has dtype {array.dtype}, not one of "
                       f"{sorted(str(d) for d in _CODES)}")
    data = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": _CODES[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for blob in blobs:
      f.write(blob)
  os.replace(tmp, path)


def load_file(path: str) -> dict[str, np.ndarray]:
  with open(path, "rb") as f:
    raw = f.read()
  if len(raw) < 8:
    raise ValueError(f"{path}: too short to be a safetensors file ({len(raw)} bytes)")
  (size,) = struct.unpack("<Q", raw[:8])
  if size > len(raw) - 8:
    raise ValueError(f"{path}: not a safetensors file (header length {size} > file size)")
  try:
    header = json.loads(raw[8:8 + size])
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a safetensors file (header is not JSON: {e})") from e
  body = memoryview(raw)[8 + size:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info.get("dtype") not in _DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
    begin, end = info["data_offsets"]
    dtype = _DTYPES[info["dtype"]].newbyteorder("<")
    array = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"])
    out[name] = array.astype(dtype.newbyteorder("="))
  return out


def read_metadata(path: str) -> dict[str, str]:
  with open(path, "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(size)).get("__metadata__", {})
