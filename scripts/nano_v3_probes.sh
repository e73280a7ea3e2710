#!/bin/bash
# Nano v3's side-by-side probes of the ninth session (the model card, "Nano v3, ninth session").
# Each variant trains into runs/probes/NAME and is skipped when its final/ exists; logs beside it.
#   scripts/nano_v3_probes.sh A B C D E    stage 0's shape: 250 steps x 16 shapes scenes at 224²
#   scripts/nano_v3_probes.sh dense plain  SFT continued from the shipped v2 (112²), 400 steps,
#                                          with stage 0's dense loss beside it or without
#   scripts/nano_v3_probes.sh dense_long   the same with dense_weight 1, 3 000 steps (resumable)
#   scripts/nano_v3_probes.sh first first_dense   (eleventh session) plain and dense again, attention
#                                          grounding asked only of each region's first coordinate
#   scripts/nano_v3_probes.sh text_first text_first_dense   plain and dense again, the prompt
#                                          before the image in the user turn (prompt_first)
#   scripts/nano_v3_probes.sh oracle_add oracle_replace   (twelfth session) plain's recipe with exact
#                                          per-cell category codes added to / replacing the visual
#                                          tokens (nano/oracle.py; evaluate with its `eval --run`);
#                                          oracle_add_long: 1 600 steps at lr 5e-4; oracle_add_first:
#                                          with the first-coordinate grounding loss; plain_long: the
#                                          control of oracle_add_long (same steps and rate, no codes)
#   scripts/nano_v3_probes.sh oracle_add_xlong plain_xlong   (thirteenth session) the same pair at
#                                          2 400 steps (the retrieval toy learns binding after ~1 000)
#   scripts/nano_v3_probes.sh oracle_add_binding plain_binding   oracle_add and plain (400 steps) with
#                                          the binding readout (train/sft.py BindingReadout) at weight 0.5
#   scripts/nano_v3_probes.sh oracle_add_xlong_binding   (fourteenth session) oracle_add_xlong with that
#                                          readout: does it bring the ~1 200-step onset forward?
#   scripts/nano_v3_probes.sh oracle_add_binding10   oracle_add_binding with the readout at weight 10:
#                                          can SFT learn the toy's retrieval when its loss dominates?
#                                          oracle_add_binding10_frozen: the same with the tower frozen;
#                                          oracle_add_binding10_detect: normal-split detection only
#   scripts/nano_v3_probes.sh plain_binding_untied   plain_binding with untied output embeddings: does the
#                                          model write more of what its readout finds?
#                                          oracle_add_xlong_binding_untied: the same on oracle_add_xlong_binding
#   scripts/nano_v3_probes.sh four_worlds   (fifteenth session) the shipped nano continued 1 200 steps on
#                                          stage 1b's mixture over all four worlds (nano_v3_sft2's), at its 112²
#   scripts/nano_v3_probes.sh throughput   stage 1a's SFT, 24 steps, not / batched by task
# One thread per run plus a data worker (the machine has 2 cores); run two at most side by side.
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
train() { name=$1; kind=$2; shift 2; [ -d runs/probes/$name/final ] && return
  mkdir -p runs/probes
  python -m rexomni_core.cli train "$kind" --set output_dir=runs/probes/$name "$@" > runs/probes/$name.log 2>&1; }
oracle() { name=$1; shift; [ -d runs/probes/$name/final ] && return
  mkdir -p runs/probes
  python -m rexomni_core.nano.oracle train --out runs/probes/$name "$@" > runs/probes/$name.log 2>&1; }
SHAPES=(--config nano_v3_vision --set max_steps=250 --set warmup_steps=20 --set save_steps=250 --set logging_steps=25
        --set 'data.kwargs.mixture=[{world: shapes, split: normal, weight: 3}, {world: shapes, split: few, weight: 1}, {world: shapes, split: dense, weight: 1}]')
HEADS='{char: 0, keypoints: 0}'
FOUR_WORLDS='[{world: shapes, task: detection, split: normal, weight: 2.0, absent_phrases: false},
  {world: shapes, task: pointing, split: normal, weight: 2.0, absent_phrases: false},
  {world: shapes, task: detection, split: normal, weight: 0.75}, {world: shapes, task: pointing, split: normal, weight: 0.75},
  {world: shapes, task: detection, split: dense, weight: 0.5}, {world: shapes, task: visual_prompting, split: normal, weight: 1.0},
  {world: shapes, task: referring, split: normal, weight: 1.0},
  {world: shapes, task: detection, split: few, weight: 0.5, absent_phrases: false},
  {world: ocr, task: ocr_box, weight: 1.0}, {world: ocr, task: ocr_polygon, weight: 0.3},
  {world: gui, task: gui_grounding, weight: 1.0}, {world: gui, task: gui_pointing, weight: 0.5},
  {world: keypoints, task: keypoint, weight: 1.0}]'  # nano_v3_sft2's mixture
CONTINUED=(--config nano_ladder4_shapes --set model=rexomni_core/assets/nano --set data.kwargs.seed=61 --set max_steps=400
           --set learning_rate=0.0002 --set warmup_steps=20 --set bf16=false --set save_steps=100 --set save_total_limit=5
           --set batch_by_task=true --set dataloader_num_workers=1 --set probe_test_images=100
           --set dense_batch_size=8 --set "dense_head_weights=$HEADS"
           --set 'dense_data={factory: "rexomni_core.data.cell_targets:CellTargetStream", kwargs: {seed: 62, mixture: [{world: shapes, split: normal, weight: 3}, {world: shapes, split: few, weight: 1}, {world: shapes, split: dense, weight: 1}]}}')
for variant in "$@"; do
  case $variant in
    A) train A_base vision "${SHAPES[@]}" --set "head_weights=$HEADS" ;;
    B) train B_fullatt vision "${SHAPES[@]}" --set "head_weights=$HEADS" --set 'nano_architecture={vision: {fullatt_block_indexes: [0, 1, 2, 3]}}' ;;
    C) train C_lr3e-4 vision "${SHAPES[@]}" --set "head_weights=$HEADS" --set learning_rate=0.0003 ;;
    D) train D_centre vision "${SHAPES[@]}" --set "head_weights=$HEADS" --set shape_cells=centre ;;
    E) train E_shape_only vision "${SHAPES[@]}" --set 'head_weights={char: 0, keypoints: 0, category: 0, box: 0, centre: 0}' ;;
    dense) train v2_dense sft "${CONTINUED[@]}" --set dense_weight=0.5 ;;
    plain) train v2_plain sft "${CONTINUED[@]}" --set dense_weight=0 ;;
    first) train v2_first sft "${CONTINUED[@]}" --set dense_weight=0 --set attention_grounding_queries=first ;;
    first_dense) train v2_first_dense sft "${CONTINUED[@]}" --set dense_weight=0.5 --set attention_grounding_queries=first ;;
    text_first) train v2_text_first sft "${CONTINUED[@]}" --set dense_weight=0 --set prompt_first=true ;;
    text_first_dense) train v2_text_first_dense sft "${CONTINUED[@]}" --set dense_weight=0.5 --set prompt_first=true ;;
    oracle_add|oracle_replace) oracle $variant --mode ${variant#oracle_} ;;
    oracle_add_long) oracle $variant --mode add --set max_steps=1600 --set learning_rate=0.0005 --set warmup_steps=50 \
        --set save_steps=200 --set save_total_limit=3 ;;
    oracle_add_first) oracle $variant --mode add --set attention_grounding_queries=first ;;
    plain_long) train v2_plain_long sft "${CONTINUED[@]}" --set dense_weight=0 --set probe_test_images=0 --set max_steps=1600 \
        --set learning_rate=0.0005 --set warmup_steps=50 --set save_steps=200 --set save_total_limit=3 ;;
    oracle_add_xlong) oracle $variant --mode add --set max_steps=2400 --set learning_rate=0.0005 --set warmup_steps=50 \
        --set save_steps=500 --set save_total_limit=2 ;;
    oracle_add_xlong_binding) oracle $variant --mode add --set max_steps=2400 --set learning_rate=0.0005 \
        --set warmup_steps=50 --set save_steps=500 --set save_total_limit=2 --set binding_readout=0.5 ;;
    oracle_add_xlong_binding_untied) oracle $variant --mode add --set max_steps=2400 --set learning_rate=0.0005 \
        --set warmup_steps=50 --set save_steps=500 --set save_total_limit=2 --set binding_readout=0.5 \
        --set untie_embeddings=true ;;
    oracle_add_binding10) oracle $variant --mode add --set binding_readout=10 ;;
    oracle_add_binding10_frozen) oracle $variant --mode add --set binding_readout=10 --set freeze_vision=true ;;
    oracle_add_binding10_detect) oracle $variant --mode add --set binding_readout=10 \
        --set 'data.kwargs.mixture=[{world: shapes, task: detection, split: normal, weight: 1, absent_phrases: false}]' ;;
    oracle_add_binding) oracle $variant --mode add --set binding_readout=0.5 ;;
    four_worlds) train v2_four_worlds sft "${CONTINUED[@]}" --set dense_weight=0 --set probe_test_images=0 \
        --set max_steps=1200 --set save_steps=300 --set save_total_limit=2 --set "data.kwargs.mixture=$FOUR_WORLDS" ;;
    plain_binding) train v2_plain_binding sft "${CONTINUED[@]}" --set dense_weight=0 --set binding_readout=0.5 ;;
    plain_binding_untied) train v2_plain_binding_untied sft "${CONTINUED[@]}" --set dense_weight=0 --set binding_readout=0.5 \
        --set untie_embeddings=true ;;
    plain_xlong) train v2_plain_xlong sft "${CONTINUED[@]}" --set dense_weight=0 --set probe_test_images=0 --set max_steps=2400 \
        --set learning_rate=0.0005 --set warmup_steps=50 --set save_steps=500 --set save_total_limit=2 ;;
    dense_long) train v2_dense_long sft "${CONTINUED[@]}" --set dense_weight=1.0 --set max_steps=3000 --set save_total_limit=3 ;;
    throughput) for grouped in false true; do
        train tput_$grouped sft --config nano_v3_sft1 --set model=runs/nano/v3/vision/final --set max_steps=24 \
          --set save_steps=1000 --set probe_test_images=0 --set logging_steps=4 --set batch_by_task=$grouped
      done ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
  esac
done
