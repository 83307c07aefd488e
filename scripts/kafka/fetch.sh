#!/usr/bin/env bash
# Copy the Apache Kafka broker's runtime jars (scripts/kafka/pom.xml) from Maven Central into
# one directory, for `java -cp 'LIB/*' kafka.Kafka`. No Docker, no Apache mirror: Maven only.
#
#   LIB = $MILLSTREAM_KAFKA_LIB, default $HOME/.cache/millstream/kafka-4.4.0/lib
#
# Does nothing when LIB is already complete: LIB/.complete holds the sha256 of pom.xml and is
# written last, after the jars are in place (a fetch cut short leaves no stamp, so the next
# run starts over; a changed pom.xml fetches again). Downloads go to a sibling directory that
# replaces LIB only when Maven succeeded. Prints LIB on stdout; progress goes to stderr.
# Needs mvn (Maven ≥ 3.6) and a JDK on PATH; exits 1 with the reason when they are missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom=$here/pom.xml
lib=${MILLSTREAM_KAFKA_LIB:-$HOME/.cache/millstream/kafka-4.4.0/lib}
stamp=$lib/.complete
want=$(sha256sum "$pom" | cut -d' ' -f1)

if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
    echo "$lib"
    exit 0
fi

if ! command -v mvn >/dev/null 2>&1; then
    echo "kafka fetch: mvn not on PATH; install Maven (Debian: apt-get install maven)" >&2
    exit 1
fi

mkdir -p "$(dirname "$lib")"
# One fetch at a time per LIB (two `make test` runs, or pytest and services.sh, at once).
exec 9>"$lib.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then  # another fetch finished meanwhile
    echo "$lib"
    exit 0
fi

tmp=$(mktemp -d "$lib.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "kafka fetch: copying the broker's runtime jars into $lib (Maven Central)" >&2
log=$lib.fetch.log
if ! mvn -B -ntp -f "$pom" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "kafka fetch: Maven failed; its whole output is in $log" >&2
    exit 1
fi
if ! compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null; then
    echo "kafka fetch: Maven finished but no kafka_2.13 jar arrived in $tmp" >&2
    exit 1
fi
rm -rf "$lib"
mv "$tmp" "$lib"
trap - EXIT
echo "$want" >"$stamp"
echo "kafka fetch: $(find "$lib" -name '*.jar' | wc -l) jars in $lib" >&2
echo "$lib"
