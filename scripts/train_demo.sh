#!/usr/bin/env bash
# Reproduce the eight embedded demo models (TransFG, RAMS-Trans, TASN, ViT baseline x birds, cars), the two
# pretrained backbones most of them start from, and their model-card figures (synthetic data version 2, 192 px).
#
#   bash scripts/train_demo.sh                  # everything: pretrain, then every method, both domains
#   bash scripts/train_demo.sh pretrain         # only the two backbones (runs/pretrain-{vit,resnet})
#   bash scripts/train_demo.sh transfg tasn     # only these methods (their backbone must exist)
#
# The backbones stand in for the ImageNet initialisation of the official recipes: trained on every synthetic class
# (32: birds and cars) on a generator seed that neither fine-tuning nor evaluation uses (fgviz.training.pretrain).
# On a 2-core CPU the whole run takes hours (each card records its own time); a GPU is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
OUT_ROOT=${OUT_ROOT:-weights}  # e.g. OUT_ROOT=runs/demo to train beside the shipped models, then copy
DOMAINS=${DOMAINS:-birds cars}  # e.g. DOMAINS=cars THREADS=1 beside DOMAINS=birds THREADS=1 on two cores
stages=("${@:-pretrain vit transfg rams_trans tasn}")
mkdir -p runs docs/training

for stage in ${stages[@]}; do
  if [ "$stage" = pretrain ]; then
    for kind in vit resnet; do
      $PY -m fgviz.train --pretrain "$kind" --preset demo --out "runs/pretrain-$kind" --threads "$THREADS" --quiet
      cp "runs/pretrain-$kind/metrics.jsonl" "docs/training/pretrain-$kind.jsonl"
    done
    continue
  fi
  # TASN starts from the pretrained ResNet, RAMS-Trans and the ViT baseline from the pretrained ViT; TransFG trains
  # from scratch (its recipe: 1500 steps), because fine-tuned from the pretrained ViT its PSM tokens were not evidence
  # (docs/training/experiments.md)
  case $stage in
    tasn) init=(--init runs/pretrain-resnet) ;;
    transfg) init=() ;;
    *) init=(--init runs/pretrain-vit) ;;
  esac
  for domain in $DOMAINS; do
    out=$OUT_ROOT/${stage}-${domain}-demo
    rm -rf "$out"
    $PY -m fgviz.train --method "$stage" --data "synth-$domain" --preset demo "${init[@]}" --out "$out" \
      --half --quiet --threads "$THREADS"
    mv "$out/metrics.jsonl" "docs/training/${stage}-${domain}.jsonl"
    rm -f "$out/checkpoint.pt"
    $PY -m fgviz.evaluate "$out" --n 200 --update-card > "docs/training/${stage}-${domain}-eval.json"
  done
done
