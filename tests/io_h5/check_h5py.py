#!/usr/bin/python3
"""check_h5py.py - stemdefect stacks seen by h5py alone, without stemdefect's code.

  check_h5py.py check STACK.h5 RANKS   checks the stack test_stack wrote (stack.h5): shapes,
                                       dtypes, chunks, values, class names and sources as
                                       str, provenance and /images attributes as str
  check_h5py.py make-foreign OUT.h5    writes a stack the way another tool would (uint8
                                       images, int64 labels, variable-length strings) for
                                       `test_stack --read-foreign OUT.h5`

Exits 0 when every check passes, 1 otherwise (each failure is printed).
"""
import re
import sys

import h5py
import numpy as np

# the test stack: keep in sync with tests/io_h5/test_stack.c
N, H, W, C = 7, 5, 6, 3
CLASS_NAMES = ["bulk", "vacancy", "interstitial"]


def pixel(i, y, x):
    return i * 1000 + y * 10 + x + 0.25


def label(i):
    return -1 if i == 4 else i % C


def mask(i, y, x):
    return (i + y + x) % (C + 1)


def source(i):
    if i == N - 1:
        return f"a/much/longer/path/to/the/last/image_{i}.tif#page2"
    return f"sample_{i}.tif"


failures = []


def expect(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def check(path, ranks):
    grid_i, grid_y, grid_x = np.meshgrid(np.arange(N), np.arange(H), np.arange(W), indexing="ij")
    with h5py.File(path, "r") as f:
        img = f["images"]
        expect(img.shape == (N, H, W), f"/images shape {img.shape} == {(N, H, W)}")
        expect(img.dtype == np.float32, f"/images dtype {img.dtype} == float32")
        expect(img.chunks == (1, H, W), f"/images chunks {img.chunks} == {(1, H, W)}")
        expect(np.array_equal(img[()], pixel(grid_i, grid_y, grid_x).astype(np.float32)),
               "/images values == i*1000 + y*10 + x + 0.25")
        for name, want in (("units", "counts"), ("normalization", "none")):
            v = img.attrs.get(name)
            expect(isinstance(v, str) and v == want, f"/images attr {name} = {v!r} (str {want!r})")
        v = img.attrs.get("description")
        expect(isinstance(v, str) and len(v) > 0, f"/images attr description = {v!r} (str)")

        lab = f["labels"]
        expect(lab.shape == (N,) and lab.dtype == np.int32, f"/labels {lab.shape} {lab.dtype}")
        expect(list(lab[()]) == [label(i) for i in range(N)], f"/labels values {list(lab[()])}")
        cn = lab.attrs.get("class_names")
        expect(cn is not None and cn.dtype.kind == "S",
               f"/labels attr class_names is a fixed-length string array ({getattr(cn, 'dtype', None)})")
        names = [s.decode("utf-8") for s in cn] if cn is not None else []
        expect(names == CLASS_NAMES and all(isinstance(s, str) for s in names),
               f"class_names attr decodes to str {names}")
        ds_names = list(f["class_names"].asstr()[()])
        expect(ds_names == CLASS_NAMES and all(isinstance(s, str) for s in ds_names),
               f"/class_names dataset as str {ds_names}")

        src = f["source"]
        expect(src.shape == (N,) and src.dtype.kind == "S",
               f"/source {src.shape} fixed-length {src.dtype}")
        longest = max(len(source(i)) for i in range(N))
        expect(src.dtype.itemsize == longest + 1,
               f"/source length {src.dtype.itemsize} == longest source {longest} + NUL")
        got = list(src.asstr()[()])
        expect(got == [source(i) for i in range(N)] and all(isinstance(s, str) for s in got),
               f"/source as str {got}")

        msk = f["masks"]
        expect(msk.shape == (N, H, W) and msk.dtype == np.uint8 and msk.chunks == (1, H, W),
               f"/masks {msk.shape} {msk.dtype} chunks {msk.chunks}")
        expect(np.array_equal(msk[()], mask(grid_i, grid_y, grid_x).astype(np.uint8)),
               "/masks values == (i + y + x) % 4")

        a = f.attrs
        for name, want in (("format", "stemdefect-stack"), ("program", "stemdefect"),
                           ("command", "test_stack"), ("command_line", "test_stack --dir x")):
            v = a.get(name)
            expect(isinstance(v, str) and v == want, f"root attr {name} = {v!r} (str {want!r})")
        for name in ("version", "git_commit"):
            v = a.get(name)
            expect(isinstance(v, str) and len(v) > 0, f"root attr {name} = {v!r} (str)")
        v = a.get("format_version")
        expect(isinstance(v, np.integer) and v == 1, f"root attr format_version = {v!r} (int 1)")
        v = a.get("ranks")
        expect(isinstance(v, np.integer) and v == ranks, f"root attr ranks = {v!r} (int {ranks})")
        v = a.get("created")
        expect(isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) is not None,
               f"root attr created = {v!r} (ISO-8601 UTC)")
        v = a.get("config")
        expect(isinstance(v, str) and len(v.encode()) > 65536 and "probe: 0.8 \u00c5" in v,
               f"root attr config: str of {len(v.encode()) if isinstance(v, str) else None} bytes "
               "(> 64 KiB) with UTF-8 text")


def make_foreign(path):
    n, h, w = 5, 4, 3
    p = np.arange(h * w).reshape(h, w)
    with h5py.File(path, "w") as f:
        f["images"] = np.stack([(i * 50 + p * 7) % 256 for i in range(n)]).astype(np.uint8)
        f["labels"] = np.array([0, 1, -1, 1, 0], dtype=np.int64)
        f["labels"].attrs["class_names"] = ["bulk", "vacancy \u00e9"]  # variable-length str
        f["source"] = np.array([f"foreign_{i}.png" for i in range(n)],
                               dtype=h5py.string_dtype())  # variable-length str
        f["masks"] = np.stack([(i + p) % 2 for i in range(n)]).astype(np.uint8)
    print(f"wrote {path}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "make-foreign":
        make_foreign(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
