#!/usr/bin/env bash
# Reproduce the six embedded demo models (3 methods x birds, cars) and their model-card figures.
#   bash scripts/train_demo.sh [method ...]     (default: all three methods, both domains)
# On a 2-core CPU each model takes minutes (see its model card for the measured time); a GPU is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
methods=("${@:-transfg rams_trans tasn}")
for method in ${methods[@]}; do
  for domain in birds cars; do
    out=weights/${method}-${domain}-demo
    rm -rf "$out"
    $PY -m fgviz.train --method "$method" --data "synth-$domain" --preset demo --out "$out" --half --quiet
    mkdir -p docs/training && mv "$out/metrics.jsonl" "docs/training/${method}-${domain}.jsonl"
    rm -f "$out/checkpoint.pt"
    $PY -m fgviz.evaluate "$out" --n 200 --update-card > "docs/training/${method}-${domain}-eval.json"
  done
done
