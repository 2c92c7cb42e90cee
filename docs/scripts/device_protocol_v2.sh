#!/bin/bash
# The GPU budget of protocol v2 on the device machine (docs/protocol.md, "GPU budget"). Two calls of the device
# tool's `run`, the second within the 30 s the machine stays warm, after `bash docs/scripts/device_pack.sh` here:
#   1. command "bash docs/scripts/device_protocol_v2.sh prepare", carry [".device/wheels", ".device/train"]
#   2. command "bash docs/scripts/device_protocol_v2.sh run --only scratch sd_l1 --seeds 0 1 --jobs 8",
#      carry [".device/test"], timeout_s 600
# `run` passes its arguments to tools/ablate.py (PLAN, default options/protocol_v2_gpu.yml), stops starting jobs
# after STOP_AFTER minutes (default 6: a started job runs to its end) and packs every finished job's results, logs
# and options into $OUT/protocol_v2_gpu.tgz, with the run's log as $OUT/run.log. Here, unpack it into docs/protocol_v2/
# (`tar xzf /work/.device/.../protocol_v2_gpu.tgz -C docs/protocol_v2`), then write the tables with --summary-only.
# Checkpoints stay on the machine (a job not finished in the call is lost: size the jobs to the call).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
SITE=.device/site  # ignored, so it stays on the warm machine between the two calls
export PYTHONPATH=$PWD:$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
step=${1:?usage: device_protocol_v2.sh prepare | run [tools/ablate.py arguments]}
shift
case $step in
  prepare)
    if ! $PY -c 'import srdistill' 2>/dev/null; then  # srdistill's compat module makes basicsr importable
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .device/wheels/*.whl
    fi
    $PY -c 'import srdistill, basicsr, torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
    $PY tools/prepare_data.py folder --hr .device/train/T91 .device/train/BSD200 --name 291 --scales 4 --min-size 96 --npy
    $PY tools/prepare_data.py split --source datasets/291
    ls datasets datasets/291 ;;
  run)
    [ -d datasets/291 ] || { echo "datasets/291 is missing: run the prepare step first, in a call just before (the machine must still be warm)" >&2; exit 2; }
    for s in Set5 Set14 BSD100; do
      [ -d datasets/$s ] || $PY tools/prepare_data.py benchmark --hr .device/test/$s --name $s
    done
    PLAN=${PLAN:-options/protocol_v2_gpu.yml}
    RUN=docs/protocol_v2/$($PY -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$PLAN")
    pack() {
      tar czf "$OUT/protocol_v2_gpu.tgz" --exclude experiments --exclude tb_logger -C docs/protocol_v2 "$(basename "$RUN")"
      ls -la "$OUT"
    }
    trap pack EXIT
    $PY tools/ablate.py -opt "$PLAN" --out "$RUN" --stop-after "${STOP_AFTER:-6}" "$@" 2>&1 | tee "$OUT/run.log" ;;
  *) echo "unknown step $step: use prepare or run" >&2; exit 2 ;;
esac
