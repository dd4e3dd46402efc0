#!/usr/bin/env bash
# Usage: scripts/kafka.sh COMMAND [ARGS...]
#
# A real Apache Kafka broker for tests: KRaft mode, one combined broker+controller
# node, listening on loopback only. The jars come from Maven Central (resolved
# with Maven into the cache); nothing else is downloaded.
#
# Commands:
#   install                   resolve org.apache.kafka:kafka_2.13 + kafka-tools and their
#                             runtime dependencies into $KAPPA_CACHE/kafka-libs (idempotent)
#   start                     install if needed, format storage if needed, start the broker,
#                             wait until it serves metadata, print KAFKA_BROKERS=127.0.0.1:PORT
#                             (already running -> just print)
#   stop                      stop the broker (SIGTERM, then SIGKILL after 30 s) and wait
#   restart                   stop + start, keeping the data (fault-injection tests)
#   reset                     stop and wipe the data directory (next start formats anew)
#   status                    exit 0 and print KAFKA_BROKERS=... if running, else exit 1
#   topic-create NAME PARTITIONS [config=value ...]
#                             create a topic (replication factor 1; no-op if it exists),
#                             e.g. `topic-create events 4 segment.bytes=1048576`
#   topic-delete NAME         delete a topic
#   topics                    list topics
#   produce TOPIC             console producer: one message per stdin line
#   consume TOPIC [N]         console consumer from the beginning, exit after N (default 1)
#                             messages or 20 s
#   logs                      print the path of the broker log file
#   tool CLASS [ARGS...]      run any Java main class with the Kafka classpath
#                             (e.g. org.apache.kafka.tools.ConsumerGroupCommand --list ...)
#   -h | --help | help        this text
#
# Environment:
#   KAPPA_CACHE   cache dir (default: <repo>/.cache, gitignored)
#   KAPPA_RUN     data/log/pid dir (default: $KAPPA_CACHE/run)
#   KAFKA_PORT    broker port (default 19092); controller uses KAFKA_CONTROLLER_PORT
#                 (default KAFKA_PORT+1)
#   KAFKA_VERSION Kafka version from Maven Central (default 4.4.0; needs Java 17+)
#   KAFKA_HEAP_OPTS JVM heap options of the broker (default -Xms256m -Xmx1g)
#
# Layout: $KAPPA_CACHE/kafka-libs-$KAFKA_VERSION/*.jar, $KAPPA_CACHE/m2 (Maven repository),
#         $KAPPA_RUN/kafka/{data,logs,server.properties,kafka.pid,kafka.out}
# Broker log: $KAPPA_RUN/kafka/logs/server.log (log4j2).
#
# Note: Kafka 4.x enforces segment.bytes >= 1 MiB per topic; for smaller segments
# use the topic config internal.segment.bytes=NNN (test-only config, accepted by 4.x).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAPPA_CACHE:-$repo/.cache}"
run="${KAPPA_RUN:-$cache/run}"
version="${KAFKA_VERSION:-4.4.0}"
port="${KAFKA_PORT:-19092}"
cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
libs="$cache/kafka-libs-$version"
m2="$cache/m2"
kdir="$run/kafka"
data="$kdir/data"
logs="$kdir/logs"
pidfile="$kdir/kafka.pid"
props="$kdir/server.properties"
# Fixed cluster id (base64url of 16 bytes, as `kafka-storage random-uuid` prints).
cluster_id="a2FwcGEtdGVzdC1jbHVzdA"
brokers="127.0.0.1:$port"

script=kafka.sh
process_pattern='kafka\.Kafka'
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

need_java() {
    command -v java >/dev/null 2>&1 || die "java not found (Java 17+ required)"
    local v
    v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    [[ -n "$v" && "$v" -ge 17 ]] || die "Java 17+ required (found: ${v:-unknown})"
}

install() {
    if [[ -f "$libs/.complete" ]]; then
        return 0
    fi
    need_java
    command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install -y maven)"
    local t0=$SECONDS work
    work="$cache/kafka-pom-$version"
    mkdir -p "$work" "$m2"
    log "resolving kafka_2.13:$version and dependencies from Maven Central..."
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kappa.test</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$version</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$version</version>
    </dependency>
    <!-- slf4j 1.7 -> log4j2 binding, so the broker and tools actually log -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.25.5</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.25.5</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$libs.tmp"
    if ! mvn -B -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$m2" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$libs.tmp" >"$work/mvn.log" 2>&1; then
        tail -n 40 "$work/mvn.log" >&2
        die "maven could not resolve kafka_2.13:$version (full log: $work/mvn.log)"
    fi
    # Kafka's own pom drags in slf4j-api 1.7.x; make sure only one log4j2 binding exists.
    rm -f "$libs.tmp"/slf4j-reload4j-*.jar "$libs.tmp"/slf4j-log4j12-*.jar
    rm -rf "$libs"
    mv "$libs.tmp" "$libs"
    touch "$libs/.complete"
    log "installed $(find "$libs" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

write_log4j() {
    mkdir -p "$logs"
    cat >"$kdir/log4j2.properties" <<'EOF'
status = warn
name = kappa-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.reqlog.name = kafka.request.logger
logger.reqlog.level = WARN
logger.netlog.name = kafka.network.RequestChannel$
logger.netlog.level = WARN
EOF
    cat >"$kdir/log4j2-tools.properties" <<'EOF'
status = error
name = kappa-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

write_props() {
    mkdir -p "$kdir" "$data"
    cat >"$props" <<EOF
# Generated by scripts/kafka.sh: single combined KRaft node on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
auto.create.topics.enable=false
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# Test data carries event-time timestamps months in the past: keep everything (tests that
# need retention delete records explicitly).
log.retention.ms=-1
log.retention.check.interval.ms=60000
EOF
}

# java with the Kafka classpath and quiet logging (stderr), for tools.
kjava() {
    java -Xms64m -Xmx512m -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$kdir/log4j2-tools.properties" \
        -cp "$libs/*" "$@"
}

# Ready = the broker answers a metadata request (TopicCommand --list succeeds).
ready() {
    kjava org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --list \
        >/dev/null 2>&1
}

start() {
    if pid_alive; then
        echo "KAFKA_BROKERS=$brokers"
        return 0
    fi
    install
    need_java
    if port_open "$port" || port_open "$cport"; then
        die "port $port or $cport already in use by another process"
    fi
    write_log4j
    write_props
    if [[ ! -f "$data/meta.properties" ]]; then
        log "formatting storage in $data (cluster id $cluster_id)"
        kjava kafka.tools.StorageTool format -t "$cluster_id" -c "$props" --ignore-formatted \
            >"$logs/format.out" 2>&1 || { cat "$logs/format.out" >&2; die "storage format failed"; }
    fi
    local t0=$SECONDS
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM options
    nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true \
        -Dkafka.logs.dir="$logs" \
        -Dlog4j2.configurationFile="$kdir/log4j2.properties" \
        -cp "$libs/*" kafka.Kafka "$props" >"$kdir/kafka.out" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + 90))
    until port_open "$port"; do
        if ! started_alive; then
            tail -n 40 "$kdir/kafka.out" "$logs/server.log" >&2 2>/dev/null || true
            rm -f "$pidfile"
            die "broker exited during startup (see $logs/server.log)"
        fi
        ((SECONDS < deadline)) || { stop; die "broker did not open port $port within 90 s"; }
        sleep 0.2
    done
    until ready; do
        started_alive || { rm -f "$pidfile"; die "broker exited during startup (see $logs/server.log)"; }
        ((SECONDS < deadline)) || { stop; die "broker not ready within 90 s"; }
        sleep 0.5
    done
    log "broker ready in $((SECONDS - t0)) s (pid $(cat "$pidfile"), log $logs/server.log)"
    echo "KAFKA_BROKERS=$brokers"
}

stop() {
    stop_service broker
    local i
    # The listener sockets are gone once the process is; double-check the port.
    for ((i = 0; i < 50; i++)); do
        port_open "$port" || break
        sleep 0.1
    done
    log "broker stopped"
}

status() {
    if pid_alive; then
        echo "KAFKA_BROKERS=$brokers"
    else
        log "not running"
        return 1
    fi
}

need_running() { pid_alive || die "broker not running (scripts/kafka.sh start)"; }

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    reset)
        stop
        rm -rf "$data"
        log "data wiped ($data)"
        ;;
    status) status ;;
    topic-create)
        [[ $# -ge 2 ]] || die "usage: topic-create NAME PARTITIONS [config=value ...]"
        need_running
        name="$1" parts="$2"
        shift 2
        args=()
        for c in "$@"; do args+=(--config "$c"); done
        kjava org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --create \
            --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 \
            "${args[@]}" >&2
        ;;
    topic-delete)
        [[ $# -eq 1 ]] || die "usage: topic-delete NAME"
        need_running
        kjava org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --delete \
            --if-exists --topic "$1" >&2
        ;;
    topics)
        need_running
        kjava org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --list
        ;;
    produce)
        [[ $# -eq 1 ]] || die "usage: produce TOPIC"
        need_running
        kjava org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$brokers" --topic "$1"
        ;;
    consume)
        [[ $# -ge 1 ]] || die "usage: consume TOPIC [N]"
        need_running
        kjava org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$brokers" \
            --topic "$1" --from-beginning --max-messages "${2:-1}" --timeout-ms 20000
        ;;
    logs) echo "$logs/server.log" ;;
    tool)
        [[ $# -ge 1 ]] || die "usage: tool CLASS [ARGS...]"
        install
        write_log4j
        kjava "$@"
        ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
