#!/usr/bin/env bash
# Alerting without a metrics stack: exits 1 (and prints the table) when any stream lags more than $1 (default 5m),
# failed, or cannot be measured. Wire it to cron/your monitoring's script check.
set -u
threshold=${1:-5m}
config=${MONGOSHIFT_CONFIG:-/etc/mongoshift/mongoshift.yaml}
if ! out=$(mongoshift lag --config "$config" --table --max-lag "$threshold" 2>&1); then
  echo "$out"
  exit 1
fi
