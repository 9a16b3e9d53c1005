#!/usr/bin/env python3
"""Writes Tests/RematTests/Fixtures/python_written.safetensors with the reference `safetensors`
package (pip install safetensors numpy), so SafetensorsTests can check that Remat reads files
written by the Python/Rust implementation. Values are chosen to be exact in their dtypes; the
expected values are repeated in Tests/RematTests/SafetensorsTests.swift.

Usage: python3 scripts/make_safetensors_fixture.py [output path]
"""
import os
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "Tests", "RematTests", "Fixtures", "python_written.safetensors")


def bf16_bits(values):
    # Upper half of the float32 bits: exact for values representable in bfloat16.
    return (np.array(values, dtype="<f4").view("<u4") >> 16).astype("<u2")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    arrays = {
        # name: (safetensors dtype name as TensorSpec spells it, array holding the raw data, shape)
        "weight": ("float32", np.array([[0.5, -1.0, 2.0], [3.25, -4.5, 0.001]], dtype="<f4"), None),
        "half": ("float16", np.array([1.0, -0.5, 65504.0], dtype="<f2"), None),
        "bf": ("bfloat16", bf16_bits([1.5, -2.0, 0.25, 3.0]), [2, 2]),
        # OCP E4M3FN bits: 1.0, -2.0, 0.5, 448 (max).
        "e4m3": ("float8_e4m3fn", np.array([0x38, 0xC0, 0x30, 0x7E], dtype="u1"), None),
        # OCP E5M2 bits: 1.0, -3.0, 0.5.
        "e5m2": ("float8_e5m2", np.array([0x3C, 0xC2, 0x38], dtype="u1"), None),
        "ids": ("int64", np.array([0, 1, -7, 50256], dtype="<i8"), None),
        "i32": ("int32", np.array([[3], [-2147483648]], dtype="<i4"), None),
        "i8": ("int8", np.array([-128, 0, 127], dtype="i1"), None),
        "dbl": ("float64", np.array([0.1, -2.5], dtype="<f8"), None),
        "mask": ("bool", np.array([True, False, True], dtype="bool"), None),
        "u8": ("uint8", np.array([0, 255], dtype="u1"), None),
        "scalar": ("float32", np.array(42.0, dtype="<f4"), None),
        "empty": ("float32", np.zeros((0, 3), dtype="<f4"), None),
    }
    keep_alive = []
    specs = {}
    for name, (dtype, array, shape) in arrays.items():
        assert array.flags["C_CONTIGUOUS"]  # (np.ascontiguousarray would turn the 0-d scalar into 1-d)
        keep_alive.append(array)
        specs[name] = TensorSpec(
            dtype=dtype,
            shape=list(shape if shape is not None else array.shape),
            data_ptr=array.ctypes.data,
            data_len=array.nbytes,
        )
    serialize_file(specs, out, metadata={"format": "pt", "source": "make_safetensors_fixture.py"})
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
