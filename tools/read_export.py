"""Reads a `qmamba export` file with Python's `safetensors` (development aid, not used by the tool).

    pip install safetensors numpy
    python3 tools/read_export.py model.safetensors

Prints the description, unpacks every integer weight (int4: two codes per byte, low nibble first,
two's complement), dequantizes it as scale[row] * code into its checkpoint shape, and lists the
activation quantizers of the first block. Docs/FORMAT.md describes the layout.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open


def unpack_int4(packed: np.ndarray, columns: int) -> np.ndarray:
    low = (packed & 0x0F).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    codes[:, 0::2], codes[:, 1::2] = low, high
    codes = np.where(codes > 7, codes - 16, codes)  # sign-extend the nibbles
    return codes[:, :columns]


def main(path: str) -> None:
    with safe_open(path, framework="numpy") as f:
        metadata = f.metadata()
    description = json.loads(metadata["qmamba"])
    configuration = json.loads(metadata["configuration"])
    tensors = load_file(path)
    print(f"{path}: method {description['method']} {description['setting']}, "
          f"format {description['format']}, depth {configuration['depth']}, {len(tensors)} tensors")

    state_dict = {}
    for key, info in description["weights"].items():
        shape = info["shape"]
        rows = shape[0]
        columns = int(np.prod(shape)) // rows
        stored = tensors[key + ".qweight"]
        codes = unpack_int4(stored, columns) if info["packing"] == "int4x2" else stored.astype(np.int32)
        scale = tensors[key + ".scale"]
        limit = (1 << (info["bits"] - 1)) - 1
        assert codes.min() >= -limit and codes.max() <= limit, key
        state_dict[key] = (scale[:, None] * codes.astype(np.float32)).reshape(shape)
    auxiliary = {k + s for k in description["weights"] for s in (".qweight", ".scale")}
    for key, value in tensors.items():
        if not key.startswith("act.") and key not in auxiliary:
            state_dict[key] = value
    stored_bytes = sum(v.nbytes for v in tensors.values())
    float_bytes = sum(v.size * 4 for v in state_dict.values())
    print(f"dequantized state dict: {len(state_dict)} tensors; file data {stored_bytes / 1e6:.2f} MB "
          f"vs float32 {float_bytes / 1e6:.2f} MB")
    w = state_dict["layers.0.mixer.in_proj.weight"]
    print(f"layers.0.mixer.in_proj.weight {w.shape}: {len(np.unique(w[0]))} distinct values in row 0")

    for point, info in description["activations"].items():
        if not point.startswith("layers.0."):
            continue
        prefix = f"act.{point}."
        if info["kind"] == "uniform":
            detail = f"scale {tensors[prefix + 'scale'][0]:.6g}, zero point {tensors[prefix + 'zero_point'][0]}"
        elif info["kind"] == "ltsq":
            values = tensors[prefix + "values"]
            detail = f"log2 scale {tensors[prefix + 'log_scale'][0]:.4g}, A_bar per code {values[0]:.4f} ... {values[-1]:.6f}"
        else:
            boundaries = tensors[prefix + "boundaries"].tolist()
            detail = f"{info['groups']} groups, boundaries {boundaries}, scales {np.round(tensors[prefix + 'scale'], 5).tolist()}"
        print(f"  {point:28s} {info['kind']:8s} {info['bits']} bits: {detail}")


if __name__ == "__main__":
    main(sys.argv[1])
