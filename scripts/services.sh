#!/usr/bin/env bash
# The external services the test suite runs against: start | stop | status.
#
# `make test` calls `start` before pytest and `stop` afterwards (always, also on failure or
# Ctrl-C); `.ci/run` goes through `make test`. Today the only backends are embedded (the
# SQLite stream log, file:// files, SQLite tables), so nothing is managed here yet.
#
# Adding a service (Kafka, PostgreSQL, …): append its name to SERVICES and write three
# functions, start_<name>, stop_<name> and status_<name>. start must be idempotent (do nothing
# if it already runs), wait until the service answers, and export nothing: tests find services
# through their own environment variables or fixed local ports, documented next to the
# functions. stop must be idempotent too and must only stop what start started (keep a pid
# file or a container name under .cache/services/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- the managed services --------------------------------------------------------------------
# Later issues add e.g.:  SERVICES+=(kafka)  and  SERVICES+=(postgresql)
SERVICES=()

# --- dispatch ----------------------------------------------------------------------------------
usage() {
    echo "usage: $0 start|stop|status" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
action=$1
case "$action" in start|stop|status) ;; *) usage ;; esac

if [[ ${#SERVICES[@]} -eq 0 ]]; then
    echo "services: none managed yet (the embedded backends need no server); nothing to $action"
    exit 0
fi

names=("${SERVICES[@]}")
if [[ $action == stop ]]; then  # stop in reverse order of starting
    names=()
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do names+=("${SERVICES[i]}"); done
fi

status=0
for name in "${names[@]}"; do
    echo "services: $action $name"
    "${action}_${name}" || status=$?
done
exit "$status"
