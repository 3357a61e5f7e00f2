#!/usr/bin/env bash
# Follow-up runs that test why a method lost to supervised in the main study (seed 0,
# same budget as run.py's defaults). Each writes results.md into diagnostics/<name>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
study=experiments/ssl_comparison/run.py
out=experiments/ssl_comparison/diagnostics
run() {  # name, methods, then --set overrides
    local name=$1 methods=$2
    shift 2
    python "$study" --seeds 0 --methods "$methods" --out "$out/$name" "$@"
}
# VAT's divergence is summed over classes while the supervised BCE is averaged: weight 1
# makes it ~C times stronger per class than the supervised term.
run vat_weight_0.1 vat --set method.vat_weight=0.1
# The mean-teacher teacher with decay 0.999 averages the whole 150-step trajectory.
run meanteacher_decay_0.95 meanteacher --set method.ema_decay=0.95
run meanteacher_student meanteacher --set method.export_student=true
# MixMatch's unlabelled weight reaches 10 after 5 of 15 epochs, on guesses of a weak model.
run mixmatch_weight_1 mixmatch --set method.mixmatch_weight=1
# mixup with alpha 1 mixes strongly; alpha 0.2 is the usual choice for small data.
run mixup_alpha_0.2 mixup --set method.mixup_alpha=0.2
# Control: with a negligible perturbation VAT's extra term vanishes; what remains is the
# clean pass over labelled + unlabelled clips (BatchNorm sees both), so this isolates
# side effects of the implementation from the VAT loss itself.
run vat_eps_1e-6 vat --set method.vat_eps=1e-6
