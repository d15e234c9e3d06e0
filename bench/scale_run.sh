#!/usr/bin/env bash
# What issue 25's "done when" asks, by hand, as a new user would: a sweep of 1,000 small trials and a
# sweep over 2.1 GB of decoded photos with 4 trials at a time, then every verb on each, timed.
# Usage: bash bench/scale_run.sh [WORK_DIR]   (from the repository root, after `make .venv/.hpsweep-installed`)
set -euo pipefail
REPO=$(pwd)
WORK=${1:-/tmp/hpsweep-scale}
H=$REPO/.venv/bin/hpsweep
PY=$REPO/.venv/bin/python
mkdir -p "$WORK"
cd "$WORK"
export HPSWEEP_STORAGE=$WORK/results HPSWEEP_CACHE=$WORK/cache MLFLOW_TRACKING_URI=sqlite:///$WORK/mlflow.db

timed() {  # timed LABEL COMMAND...: run it, print its time and the last lines of its output
  local label=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" > verb.out 2>&1
  end=$(date +%s.%N)
  printf '%s: %.1f s\n' "$label" "$(echo "$end - $start" | bc)"
  tail -n 2 verb.out
}

cat > many.yaml <<'YAML'
name: many-1000
trainable: image_classifier
data: {source: sklearn_digits}
model: {name: mlp, hidden_sizes: [16]}
train: {epochs: 1, metric: val_accuracy}
search: {algorithm: tpe, num_trials: 1000, max_concurrent: 2}
space:
  lr: {loguniform: [1.0e-4, 1.0e-1]}
  batch_size: {choice: [32, 64, 128]}
  weight_decay: {loguniform: [1.0e-6, 1.0e-2]}
resources: {cpu: 1}
YAML
(cd "$REPO" && "$PY" -m bench.peak "$H" run "$WORK/many.yaml") | tail -n 1
for verb in status report compare promote; do
  case $verb in
    report) timed "hpsweep report" "$H" report many-1000 --out report-many ;;
    compare) timed "hpsweep compare" "$H" compare many-1000 many-1000 ;;
    *) timed "hpsweep $verb" "$H" $verb many-1000 ;;
  esac
done

"$PY" -c "import sys; sys.path.insert(0, '$REPO'); from pathlib import Path; from bench.photos import photo_folder; photo_folder(Path('$WORK/photos'), 14000)"
echo "photos: $(find photos -name '*.jpg' | wc -l) JPEG files, $(du -sh photos | cut -f1)"
cat > photos.yaml <<'YAML'
name: photos-2gb
trainable: image_classifier
data: {source: image_folder, path: photos, image_size: 224}
model: {name: mlp, hidden_sizes: [32]}
train: {epochs: 2, metric: val_accuracy}
search: {algorithm: tpe, num_trials: 8, max_concurrent: 4}
space:
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  batch_size: {choice: [32, 64]}
resources: {cpu: 0.5}
YAML
(cd "$REPO" && "$PY" -m bench.peak "$H" run "$WORK/photos.yaml") | grep -E "decod|peak"
"$H" data cache
timed "hpsweep status" "$H" status photos-2gb
timed "hpsweep report" "$H" report photos-2gb --out report-photos
timed "hpsweep compare" "$H" compare photos-2gb photos-2gb
timed "hpsweep promote" "$H" promote photos-2gb
mkdir -p few && cp photos/china/00000[0-9].jpg few/
timed "hpsweep predict" "$H" predict models:/photos-2gb@champion few --out few.csv
timed "hpsweep train" "$H" train photos.yaml --set lr=0.001 --set batch_size=64 --set train.epochs=1
"$H" data cache

# Larger than memory: the same training, in a memory cgroup allowed 1.5 GB in all (the decoded data is
# 2.1 GB; the page cache the process uses is charged to the group too). Needs a writable cgroup v1 memory
# controller (root on this CI machine); skipped elsewhere.
if [ -w /sys/fs/cgroup/memory ] && [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  CG=/sys/fs/cgroup/memory/hpsweep-scale-$$
  mkdir "$CG"
  echo 1500M > "$CG/memory.limit_in_bytes"
  # the cache's pages leave the page cache first, so that reading them is charged to the group
  "$PY" -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" \
    "$(ls -d "$HPSWEEP_CACHE"/*/images.u8)"
  timed "hpsweep train in 1.5 GB of memory" bash -c "echo \$\$ > $CG/cgroup.procs; exec $H train photos.yaml --set lr=0.001 --set batch_size=64 --set train.epochs=1"
  echo "peak memory charged to the group: $(( $(cat "$CG/memory.max_usage_in_bytes") / 1000000 )) MB of 1,572 MB allowed;" \
    "the limit was hit $(cat "$CG/memory.failcnt") times (pages reclaimed to stay under it)"
  rmdir "$CG"
fi
