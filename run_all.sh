#!/usr/bin/env bash
# The whole DFDC-winning recipe, stage by stage.
#
#   ./run_all.sh                      demo: makes the embedded demo world (synthetic real and fake
#                                     clips) and runs every stage on it, on the CPU
#   ./run_all.sh DATA_ROOT TEST_DIR   real data: a dataset under DATA_ROOT in any layout that
#                                     preprocessing reads (DFDC parts, FaceForensics++, Celeb-DF, the
#                                     DFDC preview, a CSV, real/ and fake/ folders), and the test
#                                     videos: TEST_DIR a folder of them (scored where it has a
#                                     labels.csv or a DFDC part's metadata.json), or a dataset in any
#                                     of those layouts, whose official test split (or, without one,
#                                     every video) is predicted and scored
#
# Environment: WORK_DIR (default ./work) holds everything the demo makes; PYTHON picks the
# interpreter; DEMO_SEED and DEMO_VIDEOS size the demo world; PREPROCESS_WORKERS (default 2)
# sets the preprocessing processes; TRAIN_JOBS ("config:fold:seed ...") and WEIGHTS_DIR choose
# the training jobs and where checkpoints go; DETECTOR_SCALE sets MTCNN's scale for face boxes
# and prediction (real data: 0.5, the original's; demo: rule, by resolution); RECALL_BOOST=1
# retries frames without a face in prediction (real data: 0, as the original; demo: 1); the
# submission goes to WORK_DIR/submission/ (and, for the demo, inference.detect's verdicts and
# heatmaps of each test video to WORK_DIR/explain/); CALIBRATE_OPTIONS passes options to
# inference.calibrate (e.g. "--method platt"; a calibration it refuses leaves the ensemble
# uncalibrated and the run goes on). DRY_RUN=1 prints each stage's command instead.
# Stages skip work already done, so an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$#" -ne 0 ] && [ "$#" -ne 2 ]; then
    awk 'NR > 1 && /^set -euo/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

source tools/ensure_env.sh

run() {
    if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

stage_number=0
stage() {
    stage_number=$((stage_number + 1))
    printf '\n==> Stage %d: %s\n' "$stage_number" "$1"
}

started=$(date +%s)
WORK_DIR=${WORK_DIR:-work}
if [ "$#" -eq 0 ]; then
    MODE=demo
    DATA_ROOT="$WORK_DIR/demo_data"
    TEST_DIR="$DATA_ROOT/test_videos"
    PREPROCESS_CONFIG=configs/preprocess_demo.yaml
    TRAIN_JOBS=${TRAIN_JOBS:-"configs/demo.yaml:0:111 configs/demo.yaml:1:555"}
    DETECTOR_SCALE=${DETECTOR_SCALE:-rule}  # the demo's clips go down to 320 px
    RECALL_BOOST=${RECALL_BOOST:-1}
    WEIGHTS_DIR="$WORK_DIR/weights"
    stage "demo world: synthetic DFDC-layout dataset in $DATA_ROOT"
    run "$PYTHON" -m preprocess.make_demo_data --out "$DATA_ROOT" --seed "${DEMO_SEED:-0}" \
        --videos "${DEMO_VIDEOS:-36}"
else
    MODE=gpu
    DATA_ROOT=$1
    TEST_DIR=$2
    PREPROCESS_CONFIG=configs/preprocess.yaml
    TRAIN_JOBS=${TRAIN_JOBS:-"configs/b7.yaml:0:111 configs/b7.yaml:0:555 configs/b7.yaml:0:777 configs/b7.yaml:0:888 configs/b7.yaml:0:999"}
    WEIGHTS_DIR=${WEIGHTS_DIR:-weights}
    DETECTOR_SCALE=${DETECTOR_SCALE:-0.5}  # the original's, for preprocessing and prediction alike
    RECALL_BOOST=${RECALL_BOOST:-0}         # the original's: no second try on frames without a face
    for dir in "$DATA_ROOT" "$TEST_DIR"; do
        [ -d "$dir" ] || { echo "error: $dir is not a folder" >&2; exit 2; }
    done
fi

stage "dataset inventory: $DATA_ROOT"
run "$PYTHON" -m preprocess.datasets --root-dir "$DATA_ROOT"
TEST_LAYOUT=none  # a plain folder of test videos; else the dataset layout of TEST_DIR and its splits
TEST_SPLITS=""
if [ "$MODE" != demo ]; then
    test_layout=$("$PYTHON" -m inference.scoring.dataset_labels "$TEST_DIR")
    read -r TEST_LAYOUT TEST_SPLITS <<< "$test_layout"
fi
TEST_SPLIT=()
TEST_SCORED="every video"
case " $TEST_SPLITS " in *" test "*) TEST_SPLIT=(--split test) TEST_SCORED="its test split" ;; esac
if [ "$TEST_LAYOUT" != none ] && [ ${#TEST_SPLIT[@]} = 0 ] && [ "$(cd "$TEST_DIR" && pwd -P)" = "$(cd "$DATA_ROOT" && pwd -P)" ]; then
    echo "error: $TEST_DIR has no official test split (splits: ${TEST_SPLITS:-none}), so as both DATA_ROOT and" \
        "TEST_DIR it would be scored on the videos it trains on: give a separate TEST_DIR" >&2
    exit 2
fi
if [ "$TEST_LAYOUT" = none ]; then
    test_count=$( { find "$TEST_DIR" -maxdepth 1 -name '*.mp4' 2>/dev/null || true; } | wc -l)
    echo "test videos in $TEST_DIR: $test_count"
else
    echo "test videos: $TEST_DIR is a $TEST_LAYOUT dataset (splits: ${TEST_SPLITS:-none}): $TEST_SCORED is scored"
fi

stage "preprocessing: face boxes (MTCNN scale $DETECTOR_SCALE), crops, landmarks, SSIM diffs, folds (outputs under $DATA_ROOT)"
run "$PYTHON" -m preprocess.run_all --root-dir "$DATA_ROOT" --workers "${PREPROCESS_WORKERS:-2}" \
    --config "$PREPROCESS_CONFIG" --scale "$DETECTOR_SCALE"

stage "inventory: counts, frame and face sizes, sample crops -> $WORK_DIR/inventory"
run "$PYTHON" -m preprocess.inventory --root-dir "$DATA_ROOT" --out "$WORK_DIR/inventory"

stage "training: one job per config:fold:seed ($TRAIN_JOBS) -> $WEIGHTS_DIR"
run env JOBS="$TRAIN_JOBS" OUTPUT_DIR="$WEIGHTS_DIR" ./train.sh "$DATA_ROOT"
runs=()
for job in $TRAIN_JOBS; do
    IFS=: read -r config fold seed <<< "$job"
    runs+=("$WEIGHTS_DIR/logs/$(basename "$config" .yaml)_${fold}_${seed}")
done
run "$PYTHON" -m training.plot_log "${runs[@]}" --out "$WEIGHTS_DIR/curves.png"

stage "calibration: a temperature on the runs' out-of-fold predictions -> $WORK_DIR/ensemble.yaml"
# the ensemble of the best checkpoints, equal weights, with the calibration (and the false-positive
# operating points its out-of-fold reals support) that predict and detect apply. A calibration that
# could make things worse is refused (fewer than 30 out-of-fold videos of a class, as the demo's 6
# reals; a fit at a search bound): the ensemble file is then written uncalibrated and the run goes on.
ENSEMBLE="$WORK_DIR/ensemble.yaml"
CALIBRATION_REPORT="$WORK_DIR/calibration.txt"  # its last line: what became of the calibration
calibrate_options=(${CALIBRATE_OPTIONS:-})
calibrate() {
    if [ -n "${DRY_RUN:-}" ]; then
        run "$PYTHON" -m inference.calibrate "$@" --uncalibrated-if-refused \
            ${calibrate_options[@]+"${calibrate_options[@]}"}
        return
    fi
    mkdir -p "$WORK_DIR"
    "$PYTHON" -m inference.calibrate "$@" --uncalibrated-if-refused ${calibrate_options[@]+"${calibrate_options[@]}"} \
        | tee "$CALIBRATION_REPORT"
}
calibrate --runs "${runs[@]}" --out "$ENSEMBLE"

if [ "$TEST_LAYOUT" != none ]; then
    stage "prediction and scoring: $TEST_SCORED of $TEST_DIR with the ensemble -> $WORK_DIR/evaluation"
    evaluate_options=(--predict "detector_scale=$DETECTOR_SCALE")
    [ "$RECALL_BOOST" = 1 ] || evaluate_options+=(--predict no_recall_boost=true)
    [ -z "${PREDICT_WORKERS:-}" ] || evaluate_options+=(--predict "workers=$PREDICT_WORKERS")
    run "$PYTHON" -m inference.evaluate --dataset "$TEST_DIR" ${TEST_SPLIT[@]+"${TEST_SPLIT[@]}"} \
        --ensemble "$ENSEMBLE" --out "$WORK_DIR/evaluation" "${evaluate_options[@]}"
else
    stage "prediction: every video of $TEST_DIR with the ensemble of the best checkpoints"
    SUBMISSION_DIR="$WORK_DIR/submission"
    options=(--detector-scale "$DETECTOR_SCALE" --resume)
    [ "$RECALL_BOOST" = 1 ] || options+=(--no-recall-boost)
    [ -z "${PREDICT_WORKERS:-}" ] || options+=(--workers "$PREDICT_WORKERS")
    predict() {  # predict OUTPUT [OPTION ...]: the test videos with the ensemble
        local output=$1
        shift
        run "$PYTHON" -m inference.predict --test-dir "$TEST_DIR" --ensemble "$ENSEMBLE" --output "$output" "$@" \
            "${options[@]}"
    }
    TEST_LABELS=""  # what labels the test videos: a labels.csv, or a DFDC part's metadata.json
    for labels in "$TEST_DIR/labels.csv" "$TEST_DIR/metadata.json"; do
        [ -n "$TEST_LABELS" ] || [ ! -f "$labels" ] || TEST_LABELS=$labels
    done
    if [ -n "$TEST_LABELS" ]; then
        # labelled test videos: the calibration is kept only if it does not make their log loss worse than
        # their raw scores' (inference.calibrate --held-out); else the ensemble stays uncalibrated
        RAW_DIR="$WORK_DIR/submission_raw"
        echo "the test videos are labelled: their raw scores first, to check the calibration on them"
        predict "$RAW_DIR/submission.csv" --uncalibrated
        calibrate --ensemble "$ENSEMBLE" --oof "${runs[@]}" --held-out "$RAW_DIR/submission.csv" \
            --held-out-labels "$TEST_LABELS"
        if [ -n "${DRY_RUN:-}" ] || grep -q '^calibration:' "$ENSEMBLE"; then
            predict "$SUBMISSION_DIR/submission.csv"
        else
            echo "the ensemble stays uncalibrated: the submission is its raw scores of the test videos ($RAW_DIR)"
            mkdir -p "$SUBMISSION_DIR"
            cp "$RAW_DIR/submission.csv" "$RAW_DIR/errors.csv" "$RAW_DIR/details.jsonl" "$SUBMISSION_DIR/"
        fi
    else
        predict "$SUBMISSION_DIR/submission.csv"
    fi

    if [ -n "$TEST_LABELS" ]; then
        stage "scoring: $SUBMISSION_DIR/submission.csv against $TEST_LABELS"
        run "$PYTHON" -m inference.score --submission "$SUBMISSION_DIR/submission.csv" --labels "$TEST_LABELS"
    else
        echo "no $TEST_DIR/labels.csv or metadata.json: skipping the scoring stage"
    fi
fi

if [ "$MODE" = demo ]; then
    stage "checking files one by one: verdicts, Grad-CAM heatmaps and $WORK_DIR/explain/report.html"
    # exit status 1 only says that some file could not be judged (its line says why)
    run "$PYTHON" -m inference.detect "$TEST_DIR" --ensemble "$ENSEMBLE" --explain "$WORK_DIR/explain" || [ $? = 1 ]
fi

printf '\n==> Done (%s mode): %d stages in %ds\n' "$MODE" "$stage_number" "$(( $(date +%s) - started ))"
if [ -z "${DRY_RUN:-}" ] && [ -f "$CALIBRATION_REPORT" ]; then
    echo "calibration: $(tail -n 1 "$CALIBRATION_REPORT")"
fi
if [ -z "${DRY_RUN:-}" ] && [ "$MODE" = demo ]; then
    # the run's figures beside the ranges the README gives (measured over several training seeds)
    "$PYTHON" -m inference.evaluation.demo_summary --work-dir "$WORK_DIR" --fold0-run "${runs[0]}"
fi
