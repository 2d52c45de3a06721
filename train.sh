#!/usr/bin/env bash
# Train one model per (config, fold, seed): locally one after another, or as a cluster job array.
#
#   ./train.sh DATA_DIR                    every job of JOBS below, one after another
#   ./train.sh DATA_DIR --list             print the jobs with their indices
#   ./train.sh DATA_DIR --job I            only job I (e.g. I=$SLURM_ARRAY_TASK_ID)
#
# Environment: JOBS ("config:fold:seed ..."; default: the recipe's 5 B7 seeds on fold 0),
# GPUS (processes per job for torchrun; default: all visible GPUs, 1 on CPU), OUTPUT_DIR
# (default weights), EXTRA_ARGS (passed to training.train). Jobs resume from their _last
# checkpoint, so a preempted array task can simply be resubmitted.
#
# Slurm example:  sbatch --array=0-4 --gres=gpu:8 --wrap "./train.sh /data/dfdc --job \$SLURM_ARRAY_TASK_ID"
set -euo pipefail
cd "$(dirname "$0")"
if [ "$#" -lt 1 ]; then sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
DATA_DIR=$1
shift
JOBS=${JOBS:-"configs/b7.yaml:0:111 configs/b7.yaml:0:555 configs/b7.yaml:0:777 configs/b7.yaml:0:888 configs/b7.yaml:0:999"}
read -r -a jobs <<< "$JOBS"
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--list" ]; then
    for i in "${!jobs[@]}"; do echo "$i ${jobs[$i]}"; done
    exit 0
fi
selected=("${!jobs[@]}")
if [ "${1:-}" = "--job" ]; then
    [ -n "${2:-}" ] && [ "$2" -ge 0 ] && [ "$2" -lt "${#jobs[@]}" ] || { echo "error: --job takes 0..$(( ${#jobs[@]} - 1 ))" >&2; exit 2; }
    selected=("$2")
fi
GPUS=${GPUS:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
for i in "${selected[@]}"; do
    IFS=: read -r config fold seed <<< "${jobs[$i]}"
    echo "==> job $i: $config fold $fold seed $seed on $GPUS process(es)"
    # shellcheck disable=SC2086
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m training.train \
        --config "$config" --fold "$fold" --seed "$seed" --data-dir "$DATA_DIR" \
        --output-dir "${OUTPUT_DIR:-weights}" --resume auto ${EXTRA_ARGS:-}
done
