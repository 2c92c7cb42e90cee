#!/bin/bash
# Run here, once per session, before the GPU budget's device run (docs/protocol.md, "GPU budget"):
#   bash docs/scripts/device_pack.sh
# Writes .device/ (ignored through .git/info/exclude), which the device tool's `carry` sends along:
#   .device/wheels/  basicsr 1.4.2 (built here from its sdist) and the packages of ours missing on the device image
#                    (device KINDS.md: it has torch, torchvision, opencv, scikit-image, tensorboard, onnx, scipy)
#   .device/train/   T91 and BSD200 HR (the 291 set) as lossless WebP (gray ones as PNG), checked pixel for pixel
#                    (39 MiB)
#   .device/test/    Set5, Set14 and BSD100 HR, the same way (22 MiB)
# The 114 MB of ../shared do not fit the 64 MiB one call may send, and train + test + the repo (66 MiB) do not
# either, so docs/scripts/device_protocol_v2.sh takes two calls: `prepare` (carry .device/wheels, .device/train)
# then, while the machine is still warm (30 s), `run` (carry .device/test). LR images, the split and the npy packs
# are made there by tools/prepare_data.py, as here.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/datasets}
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/wheels .device/train .device/test
PY=.venv/bin/python
$PY -m pip download -q --no-deps -d .device/wheels addict==2.4.0 yapf==0.43.0 future==1.0.0 lpips==0.1.4 platformdirs
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .device/wheels lmdb==1.6.2
$PY -m pip wheel -q --no-deps --no-build-isolation -w .device/wheels basicsr==1.4.2  # an sdist only on PyPI
$PY - "$SHARED" <<'PY'
import glob, os, sys
import cv2
import numpy as np
shared = sys.argv[1]
total = 0
for part, name in (('train', 'T91'), ('train', 'BSD200'), ('test', 'Set5'), ('test', 'Set14'), ('test', 'BSD100')):
    out = os.path.join('.device', part, name)
    os.makedirs(out)
    for path in sorted(glob.glob(os.path.join(shared, name, 'HR', '*'))):
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        # WebP has no gray mode: a gray image (Set14's bridge) stays a PNG, so the pipeline reads it as here
        ext = '.png' if img.ndim == 2 else '.webp'
        target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + ext)
        cv2.imwrite(target, img, [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == '.webp' else [])  # above 100: lossless
        back = cv2.imread(target, cv2.IMREAD_UNCHANGED)
        if back is None or back.shape != img.shape or not np.array_equal(back, img):
            sys.exit(f'{path}: the WebP copy is not pixel-exact; do not use .device')
        total += os.path.getsize(target)
    print(f'.device/{part}/{name}: {len(os.listdir(out))} images, each pixel-exact')
print(f'{total / 2**20:.1f} MiB of images')
PY
du -sh .device/*
