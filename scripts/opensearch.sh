#!/usr/bin/env bash
# Usage: scripts/opensearch.sh COMMAND
#
# A real OpenSearch node (the Apache-2.0 fork of Elasticsearch) for the differential tests:
# one node on loopback, started in-process by scripts/opensearch/KappaOpenSearchNode.java
# from the jars on Maven Central (the distribution itself is not there). Only the HTTP
# transport and the common analysis plugins: no scripting, so it starts in seconds.
#
# Commands:
#   install              resolve org.opensearch:opensearch + transport-netty4-client +
#                        analysis-common into $KAPPA_CACHE/opensearch-libs-$VERSION and
#                        compile the launcher (idempotent)
#   start                install if needed, start the node, wait for a green cluster,
#                        print OPENSEARCH_URL=http://127.0.0.1:PORT (running -> just print)
#   stop                 stop the node (SIGTERM, then SIGKILL after 30 s) and wait
#   reset                stop and wipe the data directory
#   status               exit 0 and print OPENSEARCH_URL=... if it answers, else exit 1
#   logs                 print the path of the node's output file
#   -h | --help | help   this text
#
# Environment:
#   KAPPA_CACHE          cache dir (default: <repo>/.cache, gitignored)
#   KAPPA_RUN            data/log/pid dir (default: $KAPPA_CACHE/run)
#   OPENSEARCH_PORT      HTTP port (default 19200); the transport uses OPENSEARCH_PORT+100
#   OPENSEARCH_VERSION   version from Maven Central (default 2.19.6; 3.x needs Java 21)
#   OPENSEARCH_HEAP      JVM heap (default 384m)
#
# Layout: $KAPPA_CACHE/opensearch-libs-$VERSION/{*.jar,classes/},
#         $KAPPA_RUN/opensearch/{data,logs,opensearch.pid,opensearch.out}
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAPPA_CACHE:-$repo/.cache}"
run="${KAPPA_RUN:-$cache/run}"
version="${OPENSEARCH_VERSION:-2.19.6}"
port="${OPENSEARCH_PORT:-19200}"
tport="$((port + 100))"
heap="${OPENSEARCH_HEAP:-384m}"
libs="$cache/opensearch-libs-$version"
m2="$cache/m2"
odir="$run/opensearch"
pidfile="$odir/opensearch.pid"
out="$odir/opensearch.out"
url="http://127.0.0.1:$port"
launcher="$repo/scripts/opensearch/KappaOpenSearchNode.java"

script=opensearch.sh
process_pattern='KappaOpenSearchNode'
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

need_java() {
    command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 ||
        die "java and javac not found (Java 17 JDK required)"
}

install() {
    # The launcher is recompiled whenever its source changes (its hash names the class dir).
    local sum classes
    sum="$(sha256sum "$launcher" | cut -c1-12)"
    classes="$libs/classes-$sum"
    if [[ -f "$libs/.complete" && -f "$classes/KappaOpenSearchNode.class" ]]; then
        return 0
    fi
    need_java
    if [[ ! -f "$libs/.complete" ]]; then
        command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install -y maven)"
        local t0=$SECONDS work
        work="$cache/opensearch-pom-$version"
        mkdir -p "$work" "$m2"
        log "resolving org.opensearch:opensearch:$version and plugins from Maven Central..."
        cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kappa.test</groupId>
  <artifactId>opensearch-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.opensearch</groupId>
      <artifactId>opensearch</artifactId>
      <version>$version</version>
    </dependency>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>transport-netty4-client</artifactId>
      <version>$version</version>
    </dependency>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>analysis-common</artifactId>
      <version>$version</version>
    </dependency>
    <!-- optional in OpenSearch's pom, needed for it to log at all; one version for both -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>2.25.5</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.25.5</version>
    </dependency>
  </dependencies>
</project>
POM
        rm -rf "$libs.tmp"
        if ! mvn -B -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$m2" \
            dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$libs.tmp" >"$work/mvn.log" 2>&1; then
            tail -n 40 "$work/mvn.log" >&2
            die "maven could not resolve opensearch:$version (full log: $work/mvn.log)"
        fi
        rm -rf "$libs"
        mv "$libs.tmp" "$libs"
        touch "$libs/.complete"
        log "installed $(find "$libs" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
    fi
    rm -rf "$libs"/classes-*
    mkdir -p "$classes"
    javac -nowarn -d "$classes" -cp "$libs/*" "$launcher" >&2 || die "launcher does not compile"
}

write_log4j() {
    mkdir -p "$odir/logs"
    cat >"$odir/log4j2.properties" <<'L4J'
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kappa.opensearch.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.node.name = org.opensearch.node.Node
logger.node.level = INFO
L4J
}

green() {
    curl -fsS --max-time 5 "$url/_cluster/health?wait_for_status=green&timeout=1s" 2>/dev/null |
        grep -q '"status":"green"'
}

start() {
    if pid_alive; then
        echo "OPENSEARCH_URL=$url"
        return 0
    fi
    install
    if port_open "$port" || port_open "$tport"; then
        die "port $port or $tport already in use by another process"
    fi
    write_log4j
    mkdir -p "$odir/data"
    local t0=$SECONDS sum
    sum="$(sha256sum "$launcher" | cut -c1-12)"
    # C1 only and a small serial-GC heap: a test node answers small requests, and start-up
    # time dominates on two shared cores.
    nohup java "-Xms$heap" "-Xmx$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true -Dkappa.opensearch.log="$odir/logs/opensearch.log" \
        -Dlog4j2.configurationFile="$odir/log4j2.properties" \
        -Dlog4j2.disable.jmx=true \
        -cp "$libs/*:$libs/classes-$sum" KappaOpenSearchNode "$odir" "$port" "$tport" \
        >"$out" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + 120))
    until green; do
        if ! started_alive; then
            tail -n 40 "$out" "$odir/logs/opensearch.log" >&2 2>/dev/null || true
            rm -f "$pidfile"
            die "node exited during startup (see $odir/logs/opensearch.log)"
        fi
        ((SECONDS < deadline)) || { stop; die "node not green within 120 s"; }
        sleep 0.5
    done
    log "node green in $((SECONDS - t0)) s (pid $(cat "$pidfile"), log $odir/logs/opensearch.log)"
    echo "OPENSEARCH_URL=$url"
}

stop() {
    stop_service node
    log "node stopped"
}

status() {
    if pid_alive && green; then
        echo "OPENSEARCH_URL=$url"
    else
        log "not running"
        return 1
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    reset)
        stop
        rm -rf "$odir/data"
        log "data wiped ($odir/data)"
        ;;
    status) status ;;
    logs) echo "$odir/logs/opensearch.log" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
