#!/usr/bin/env bash
# `make lint`'s check of the Helm chart: kube-score on the chart rendered in
# both modes with every optional object enabled, so each object is scored.
# Deliberate exceptions are `kube-score/ignore` annotations in the chart, each
# with its reason next to it; the one flag below is the CPU limit, which the
# chart leaves unset on purpose (a throttled agent beats late and its peers
# take its addresses over; see the annotations in templates/agent.yaml).
#
# kube-linter is not run: the Go module proxy here refuses it
# (`go list -m -versions golang.stackrox.io/kube-linter` -> "403 Forbidden:
# Go module fetches are limited to the module-host allowlist"). The chart
# carries its ignore-check.kube-linter.io annotations for users who run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# both are cached after their first build (minutes cold); a failed build shows its log
helm=$(bash "$here/build-helm.sh" 2>"$out/build.log" | tail -1) || { cat "$out/build.log" >&2; exit 1; }
kube_score=$(bash "$here/build-kube-score.sh" 2>"$out/build.log" | tail -1) \
  || { cat "$out/build.log" >&2; exit 1; }
for mode in claims simple; do
  "$helm" template externalip "$here/../charts/externalip" --namespace externalip \
    --kube-version 1.37.2 --set mode=$mode \
    --set metrics.serviceMonitor.enabled=true --set metrics.podMonitor.enabled=true \
    --set metrics.prometheusRule.enabled=true --set scheduler.networkPolicy.enabled=true \
    > "$out/$mode.yaml" 2>/dev/null
done
"$kube_score" score --output-format ci --kubernetes-version v1.34 --exit-one-on-warning \
  --ignore-container-cpu-limit "$out/claims.yaml" "$out/simple.yaml" > "$out/score" || status=$?
if [ "${status:-0}" -ne 0 ]; then
  grep -v '^\[OK\]\|^\[SKIPPED\]' "$out/score" >&2
  echo "kube-score: the chart has findings (fix them, or annotate a deliberate one with its reason)" >&2
  exit 1
fi
echo "kube-score: chart clean ($(grep -c '^\[OK\]' "$out/score") checks passed)"
