#!/usr/bin/env bash
# The classifier cannot use the shortcuts of the real data (README of stem-real): test images
# re-encoded as 16-bit PNG after a linear rescale, and as a stack written by h5py with
# another dtype and scale, get the same predictions. Needs ../shared/data/stem-real (skips
# without it, unless CI=true) and h5py.
source "$(dirname "$0")/../e2e/lib.sh"
if [ -z "$REAL" ]; then
  [ "${CI:-}" = true ] && { echo "real data missing (required in CI)"; exit 1; }
  echo "SKIP: ../shared/data/stem-real not found"; exit 77
fi
/usr/bin/python3 -c "import h5py, numpy, zlib" 2>/dev/null || { [ "${CI:-}" = true ] && exit 1; echo "SKIP: h5py missing"; exit 77; }
expect_ok "$SD" import --input "$REAL/STO" --output "$WORK/sto.h5" --quiet
expect_ok $MPIRUN -n 2 "$SD" train --task classify --data "$WORK/sto.h5" --output "$WORK/m.h5" --epochs 3 \
  --set classifier.width=8 --quiet
expect_ok "$SD" predict --model "$WORK/m.h5" --data "$WORK/sto.h5" --output "$WORK/p0.h5" --quiet
# every image rescaled (x * a_i + b_i, a different positive gain and offset per image) and
# re-encoded as 16-bit grey PNG, one folder per class, imported again
/usr/bin/python3 - "$WORK/sto.h5" "$WORK/png" <<'PY'
import sys, os, zlib, struct, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
x, y = f["images"][:], f["labels"][:]
names = [n.decode() if isinstance(n, bytes) else n for n in f["labels"].attrs["class_names"]]
out = sys.argv[2]
rng = np.random.default_rng(5)
def png16(path, a):
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in a)
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    hdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 16, 0, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(len(y)):
    a = x[i] * rng.uniform(20, 200) + rng.uniform(0, 5000)
    d = os.path.join(out, names[y[i]]); os.makedirs(d, exist_ok=True)
    png16(os.path.join(d, "img_%04d.png" % i), np.clip(np.rint(a), 0, 65535))
PY
expect_ok "$SD" import --input "$WORK/png" --recursive --labels folder --output "$WORK/sto_png.h5" --quiet
# the PNG stack lists files per class folder: compare predictions image by image through /source
expect_ok "$SD" predict --model "$WORK/m.h5" --data "$WORK/sto_png.h5" --output "$WORK/p1.h5" --quiet
/usr/bin/python3 - "$WORK/sto_png.h5" "$WORK/p0.h5" "$WORK/p1.h5" <<'PY' && ok || fail "predictions changed after rescaling and re-encoding"
import sys, re, h5py, numpy as np
src = [s.decode() if isinstance(s, bytes) else s for s in h5py.File(sys.argv[1], "r")["source"][:]]
idx = np.array([int(re.search(r"img_(\d+)\.png", s).group(1)) for s in src])
p0 = h5py.File(sys.argv[2], "r")["predicted"][:]
p1 = h5py.File(sys.argv[3], "r")["predicted"][:]
agree = np.mean(p0[idx] == p1)
print("prediction agreement after rescale + PNG re-encoding: %.4f" % agree)
assert agree >= 0.99, agree
PY
finish
