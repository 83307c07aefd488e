#!/usr/bin/env bash
# The external services the test suite runs against: start | stop | status.
#
# `make test` calls `start` before pytest and `stop` afterwards (always, also on failure or
# Ctrl-C); `.ci/run` goes through `make test`. Managed so far: kafka (its jars; see below).
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
# Later issues add e.g.:  SERVICES+=(postgresql)
SERVICES=()

# kafka: only the jars are managed here. `start` copies Apache Kafka's runtime jars from Maven
# Central once (scripts/kafka/fetch.sh; cached in $MILLSTREAM_KAFKA_LIB, default
# ~/.cache/millstream/kafka-4.4.0/lib), so CI downloads them before pytest. The brokers are
# started and stopped by pytest itself (tests/conftest.py, tests/support/kafka_cluster.py) on
# free loopback ports; tests get them from the fixtures kafka_bootstrap / kafka_cluster3.
# Without Java ≥ 17 or Maven this warns and the Kafka tests skip — unless
# MILLSTREAM_REQUIRE_SERVICES=1 (CI), where it fails.
SERVICES+=(kafka)

kafka_missing() {
    if [[ ${MILLSTREAM_REQUIRE_SERVICES:-} == 1 ]]; then
        echo "services: kafka: $1" >&2
        return 1
    fi
    echo "services: kafka: $1; the Kafka tests will be skipped" >&2
}

start_kafka() {
    if [[ ${MILLSTREAM_KAFKA_DISABLE:-} == 1 ]]; then
        kafka_missing "disabled by MILLSTREAM_KAFKA_DISABLE=1"
        return
    fi
    command -v java >/dev/null 2>&1 || [[ -x ${JAVA_HOME:-/nonexistent}/bin/java ]] ||
        { kafka_missing "no java (Java ≥ 17) on PATH"; return; }
    bash scripts/kafka/fetch.sh >/dev/null || kafka_missing "could not fetch the Kafka jars"
}

stop_kafka() {
    : # pytest stops the brokers it started (a killed session's: the next session does)
}

status_kafka() {
    local lib=${MILLSTREAM_KAFKA_LIB:-$HOME/.cache/millstream/kafka-4.4.0/lib}
    if [[ -f $lib/.complete ]]; then echo "kafka: jars in $lib"; else echo "kafka: no jars yet"; fi
    local state
    for state in "${TMPDIR:-/tmp}"/millstream-kafka-*/state.json; do
        [[ -f $state ]] || continue
        echo "kafka: $(dirname "$state"): $(grep -o '"status": "[a-z]*"' "$state")"
    done
}

# s3proxy: a real S3-compatible server for the file store's s3:// tests. Only the jar is
# managed here (fetched with Maven into ~/.m2 once, so CI downloads it before pytest); the
# server is started and stopped by pytest (tests/support/s3_fixtures.py). Without Java or
# Maven the tests fall back to moto's server (a fake) — refused when MILLSTREAM_REQUIRE_SERVICES=1.
SERVICES+=(s3proxy)
S3PROXY_ARTIFACT=org.gaul:s3proxy:2.1.0:jar:jar-with-dependencies
S3PROXY_JAR=~/.m2/repository/org/gaul/s3proxy/2.1.0/s3proxy-2.1.0-jar-with-dependencies.jar

start_s3proxy() {
    [[ -f $S3PROXY_JAR ]] && return 0  # fetched before: Maven would take seconds to say so
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        if [[ ${MILLSTREAM_REQUIRE_SERVICES:-} == 1 ]]; then
            echo "services: s3proxy: needs java and mvn" >&2
            return 1
        fi
        echo "services: s3proxy: no java/mvn; the s3:// tests will use moto's server" >&2
        return 0
    fi
    mvn -B -ntp -q dependency:get -Dartifact="$S3PROXY_ARTIFACT" -Dtransitive=false ||
        { echo "services: s3proxy: could not fetch $S3PROXY_ARTIFACT" >&2
          [[ ${MILLSTREAM_REQUIRE_SERVICES:-} != 1 ]]; }
}

stop_s3proxy() {
    : # pytest stops the server it started
}

status_s3proxy() {
    if [[ -f $S3PROXY_JAR ]]; then echo "s3proxy: $S3PROXY_JAR"; else echo "s3proxy: no jar yet"; fi
}

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
