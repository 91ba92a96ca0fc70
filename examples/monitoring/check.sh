#!/usr/bin/env bash
# Checks the monitoring examples with Prometheus's own tool: the alerting
# rules load (`promtool check rules`), their unit tests pass (`promtool test
# rules`), and every PromQL expression of the Grafana dashboard parses.
# Installs promtool (Debian's `prometheus` package) when it is missing.
# That every metric they name exists is checked against a live gateway by
# `cargo test -p sluice-tests --test all monitoring`.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "check.sh: promtool is needed; install Prometheus (Debian: apt-get install prometheus)" >&2
    exit 1
  fi
fi
promtool --version | head -n 1

promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts_test.yml

# The dashboard's queries as recording rules, Grafana's variables replaced by
# what they stand for, so promtool parses each one.
queries="$(mktemp --suffix=.yml)"
trap 'rm -f "$queries"' EXIT
python3 - grafana/sluice.json > "$queries" <<'EOF'
import json, sys

dashboard = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for panel in panels:
        walk(panel.get("panels", []))
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
walk(dashboard["panels"])
if not exprs:
    sys.exit("no queries found in the dashboard")
print("groups:\n  - name: dashboard\n    rules:")
for i, (title, expr) in enumerate(exprs):
    for var, value in (("$__rate_interval", "5m"), ("$model", ".*"), ("$upstream", ".*")):
        expr = expr.replace(var, value)
    if "$" in expr:
        sys.exit(f"panel {title!r}: an unknown variable in {expr}")
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}")
EOF
echo "Checking the dashboard's queries"
promtool check rules "$queries"
echo "monitoring checks: ok"
