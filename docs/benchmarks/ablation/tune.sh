#!/usr/bin/env bash
# How each row of `anpyc bench ablation` / `ablation-domain` got its strength: a 4-point grid per
# row on the protocol's validation split (its tuning proxy: all 10 tasks of both, test accuracy on
# 2,000 images per task), the same budget for every row. The chosen values are in
# anpyc.bench.ABLATION_TUNED (a test checks them against the tune.json files committed beside
# this script). Grids: lambda in half-decade steps around the
# scale of each importance (mean Omega ~1.6e-3, Fisher ~6e-4, |theta| ~2e-2 after one task of
# permuted MNIST), the same on both protocols; the row without consolidation tunes its retraining
# share instead.
# Usage: bash docs/benchmarks/ablation/tune.sh OUT [JOBS] [PROTOCOLS]   (OUT e.g. bench-out/ablation-tune;
# PROTOCOLS by default "pmnist10 pmnist10-domain")
set -euo pipefail
out=${1:?usage: tune.sh OUT [JOBS] [PROTOCOLS]}
jobs=${2:-1}
protocols=${3:-pmnist10 pmnist10-domain}
# the paper's mechanisms, pinned as anpyc.experiments.bench.PAPER_MECHANISMS pins them (the
# method's defaults keep only what earned its place); a row's own settings override them
paper="importance=omega taylor_form=removal structure=spread update=elementwise prune=true keep_schedule=reference prune_steps=1 retrain_epochs=0.25"
pinned=$paper
source "$(dirname "$0")/tune-rows.sh"
{
  for proto in $protocols; do
    # the same grids on both protocols (a first domain search a decade higher, 3-100, put six of
    # its seven rows' optimum at its lowest point: docs/benchmarks/ablation/README.md)
    o="0.3,1,3,10"; f="1,3,10,30"; m="0.03,0.1,0.3,1"
    row $proto anpyc-all "lam=$o"
    row $proto no-structure structure=none "lam=$o"
    row $proto omega-magnitude importance=magnitude "lam=$m"
    row $proto omega-fisher importance=fisher "lam=$f"
    row $proto no-elementwise update=plain "lam=$o"
    row $proto no-pruning prune=false "lam=$o"
    row $proto no-consolidation lam=0 update=plain "retrain_epochs=0.05,0.1,0.25,0.5"
  done
} | run_rows "$jobs"
