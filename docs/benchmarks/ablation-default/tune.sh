#!/usr/bin/env bash
# How each row of `anpyc bench ablation-default` / `ablation-default-domain` got its strength:
# the second stage of the ablation, on the default's own base (anpyc.experiments.bench.
# DEFAULT_MECHANISMS: Omega with the authors' sign, no structure shaping, the plain update, no pruning), each mechanism
# removed, replaced or added back per row. The same budget and grids as the first stage
# (docs/benchmarks/ablation/tune.sh): 4 points of lambda per row, half a decade apart around the
# scale of each importance, on the protocol's validation split with its tuning proxy (all 10
# tasks, test accuracy on 2,000 images per task). The chosen values are in
# anpyc.experiments.bench.DEFAULT_ABLATION_TUNED (a test checks them against the tune.json files
# committed beside this script). The row against ones (importance=uniform, a plain L2 pull to the
# anchor) was added on 2026-12-08 and tuned alone: `ROWS=omega-uniform bash tune.sh OUT 2`. The row
# without consolidation is fine-tune (lam 0 with pruning
# off trains as fine-tune does), which has no knob.
# Usage: bash docs/benchmarks/ablation-default/tune.sh OUT [JOBS] [PROTOCOLS]
set -euo pipefail
out=${1:?usage: tune.sh OUT [JOBS] [PROTOCOLS]}
jobs=${2:-1}
protocols=${3:-pmnist10 pmnist10-domain}
# the default's mechanisms, pinned as anpyc.experiments.bench.DEFAULT_MECHANISMS pins them; a
# row's own settings override them
base="importance=omega taylor_form=reference structure=none update=plain prune=false"
pinned=$base
source "$(dirname "$0")/../ablation/tune-rows.sh"
{
  for proto in $protocols; do
    o="0.3,1,3,10"; f="1,3,10,30"; m="0.03,0.1,0.3,1"; u="0.001,0.003,0.01,0.03"
    row $proto anpyc-default "lam=$o"
    row $proto omega-magnitude importance=magnitude "lam=$m"
    row $proto omega-fisher importance=fisher "lam=$f"
    row $proto omega-uniform importance=uniform "lam=$u"
    row $proto omega-removal-form taylor_form=removal "lam=$o"
    row $proto with-elementwise update=elementwise "lam=$o"
    row $proto with-structure structure=spread "lam=$o"
    row $proto with-pruning prune=true keep_schedule=reference prune_steps=1 retrain_epochs=0.25 "lam=$o"
  done
} | { if [[ -n ${ROWS:-} ]]; then grep -E -- "/($(tr ' ,' '||' <<< "$ROWS"))\$"; else cat; fi; } | run_rows "$jobs"
