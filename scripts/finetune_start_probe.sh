#!/bin/bash
# Tenth session (#19): does `rexomni finetune` learn the two novel colours when the start model's
# visual tokens carry colour? Two starts, the same 10 minutes of full fine-tuning on the same 500
# novel images, the same 100 held-out images per test set:
#   v2     the shipped nano (its tokens give the colour of 44 % of object cells, model card)
#   ck900  runs/probes/v2_dense_long_ck900: v2 continued 900 SFT steps with stage 0's dense loss
#          (scripts/nano_v3_probes.sh dense_long; colour 98 %), not shipped
# Each writes runs/probes/ft-START/benchmark.json and is skipped when that exists.
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
for start in "${@:-v2 ck900}"; do
  for name in $start; do
    case $name in
      v2) model=() ;;
      ck900) model=(--model runs/probes/v2_dense_long_ck900) ;;
      *) echo "unknown start $name" >&2; exit 2 ;;
    esac
    [ -f runs/probes/ft-$name/benchmark.json ] && continue
    python benchmarks/finetune_novel.py --out runs/probes/ft-$name --modes full --minutes 10 --test 100 "${model[@]}" \
      > runs/probes/ft-$name.log 2>&1
  done
done
