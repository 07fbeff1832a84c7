#!/usr/bin/env bash
# One prepared GPU check (issue 22), sized to finish in under 8 minutes on one GPU:
#   - AMP training images/s of `doctor train`, scales n and s, imgsz 640, batch 32, on the sample dataset
#     (2 epochs each: the first includes cuDNN autotuning and warm-up, the table reports the second);
#   - evaluation images/s of `doctor val` (n, val split, imgsz 640, batch 32);
#   - the same for Ultralytics YOLOv8n / YOLOv8s on the same GPU, only if `ultralytics` imports in $PEER_PYTHON
#     (it is never installed by this script; skipped with a note otherwise).
# Writes a markdown table to --out (default gpu_check.md) and prints it.
#
#   bash bench/gpu_check.sh [--out FILE] [--work DIR] [--python PY] [--peer-python PY] [--dry-run]
#
# --dry-run parses the arguments, checks the tools, prints the commands it would run and exits 0 without a GPU
# (this is the only path run on the development machines: the CUDA path has not been run on a real GPU yet).
# Every stage has its own time limit (STAGE_TIMEOUT, default 75 s: six stages stay under 8 minutes); a stage that fails or runs out is
# recorded as such in the table and the script goes on.
set -u -o pipefail

OUT_FILE=gpu_check.md
WORK=""
PY=${PYTHON:-python3}
PEER_PY=${PEER_PYTHON:-}
DRY=0
STAGE_TIMEOUT=${STAGE_TIMEOUT:-75}
EPOCHS=2
BATCH=32
IMGSZ=640

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT_FILE=${2:?--out needs a file}; shift 2 ;;
        --work) WORK=${2:?--work needs a folder}; shift 2 ;;
        --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
        --peer-python) PEER_PY=${2:?--peer-python needs an interpreter}; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -n "$WORK" ] || WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$WORK"

run() {  # run LABEL COMMAND...: print it; in a dry run only print
    local label=$1; shift
    echo "+ [$label] $*"
    [ "$DRY" = 1 ] && return 0
    local start=$(date +%s.%N)
    timeout "$STAGE_TIMEOUT" "$@" > "$WORK/$label.log" 2>&1
    local rc=$?
    echo "$(date +%s.%N) - $start" | bc > "$WORK/$label.seconds"
    [ $rc -eq 0 ] || echo "  [$label] failed (exit $rc; 124 = over ${STAGE_TIMEOUT}s), log: $WORK/$label.log"
    return $rc
}

if ! "$PY" -c "import torch, dataset_doctor" 2>/dev/null; then
    echo "gpu_check.sh: $PY cannot import torch and dataset_doctor (pass --python)" >&2; exit 2
fi
if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to $PY (use --dry-run to check the script without one)" >&2; exit 2
fi
HAVE_PEER=0
if [ -n "$PEER_PY" ] && "$PEER_PY" -c "import ultralytics" 2>/dev/null; then HAVE_PEER=1; fi

DATA="$WORK/sample/data.yaml"
run sample "$PY" -m dataset_doctor sample "$WORK/sample" --seed 0

ours_train() {  # ours_train SCALE
    run "train-$1" "$PY" -m dataset_doctor train "$DATA" --model "$1" --epochs $EPOCHS --imgsz $IMGSZ --batch $BATCH \
        --device cuda --amp --eval-every $EPOCHS --workers 8 --project "$WORK/runs" --name "ours-$1" --exist-ok \
        --no-tensorboard --no-live-report
}
ours_val() {
    run "val-n" "$PY" -m dataset_doctor val "$WORK/runs/ours-n/weights/last.pt" "$DATA" --split val --imgsz $IMGSZ \
        --batch $BATCH --device cuda --json "$WORK/val-n.json"
}
PEER_SCRIPT='
import sys, time
from ultralytics import YOLO
data, scale, epochs, imgsz, batch, project = sys.argv[1:7]
model = YOLO(f"yolov8{scale}.yaml")
model.train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), device=0, workers=8, amp=True,
            project=project, name=f"peer-{scale}", exist_ok=True, seed=0, plots=False, val=False, verbose=False)
started = time.perf_counter()
metrics = model.val(data=data, imgsz=int(imgsz), batch=int(batch), device=0, plots=False, verbose=False)
print("PEER_VAL_SECONDS", time.perf_counter() - started)
'
peer_train() {  # peer_train SCALE
    run "peer-$1" "$PEER_PY" -c "$PEER_SCRIPT" "$DATA" "$1" $EPOCHS $IMGSZ $BATCH "$WORK/runs"
}

STARTED=$(date +%s)
ours_train n; ours_train s; ours_val
if [ "$HAVE_PEER" = 1 ]; then peer_train n; peer_train s; else echo "ultralytics not importable (--peer-python): peer rows skipped"; fi
[ "$DRY" = 1 ] && { echo "dry run: nothing was run; table would go to $OUT_FILE"; exit 0; }

"$PY" - "$WORK" "$OUT_FILE" "$HAVE_PEER" "$(( $(date +%s) - STARTED ))" <<'EOF'
"""Collect the runs' numbers into one markdown table (missing runs are recorded, not invented)."""
import csv, json, re, sys, datetime
from pathlib import Path
import torch
work, out, have_peer, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]

def last_epoch_images_per_s(results: Path, column: str, images: int | None = None) -> str:
    if not results.exists():
        return "failed (see log)"
    rows = list(csv.DictReader(results.open()))
    if not rows:
        return "no epoch"
    row = {k.strip(): v for k, v in rows[-1].items()}
    if column in row:
        return f"{float(row[column]):.1f}"
    if images and "time" in row and len(rows) > 1:  # Ultralytics: cumulative seconds per epoch
        prev = {k.strip(): v for k, v in rows[-2].items()}
        return f"{images / (float(row['time']) - float(prev['time'])):.1f}"
    return "n/a"

train_images = sum(1 for p in (work / "sample" / "images" / "train").iterdir())
val_images = sum(1 for p in (work / "sample" / "images" / "val").iterdir())
lines = [f"GPU check {datetime.date.today()}: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
         f"imgsz 640, batch 32, AMP, sample dataset ({train_images} train / {val_images} val), {seconds} s in all",
         "", "| tool | what | images/s |", "|---|---|---:|"]
for scale in ("n", "s"):
    value = last_epoch_images_per_s(work / "runs" / f"ours-{scale}" / "results.csv", "images_per_s")
    lines.append(f"| dataset-doctor | train {scale}, epoch 2 | {value} |")
val_json, val_seconds = work / "val-n.json", work / "val-n.seconds"
if val_json.exists() and val_seconds.exists():  # wall time of the whole `doctor val` process, start-up included
    lines.append(f"| dataset-doctor | val n (whole command) | {val_images / float(val_seconds.read_text()):.1f} |")
else:
    lines.append(f"| dataset-doctor | val n | failed (see {work / 'val-n.log'}) |")
if have_peer:
    for scale in ("n", "s"):
        value = last_epoch_images_per_s(work / "runs" / f"peer-{scale}" / "results.csv", "", train_images)
        lines.append(f"| Ultralytics | train {scale}, epoch 2 | {value} |")
        log = work / f"peer-{scale}.log"
        m = re.search(r"PEER_VAL_SECONDS ([\d.]+)", log.read_text()) if log.exists() else None
        lines.append(f"| Ultralytics | val {scale} (end to end) | "
                     f"{val_images / float(m.group(1)):.1f} |" if m else f"| Ultralytics | val {scale} | failed |")
else:
    lines.append("| Ultralytics | - | skipped: not importable |")
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
