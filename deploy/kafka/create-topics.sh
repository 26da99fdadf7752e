#!/usr/bin/env bash
# Creates every topic of topics.txt with the tenant prefix, idempotently (--if-not-exists), with
# Apache Kafka's own kafka-topics.sh. Run by docker-compose's kafka-topics step and by the Helm
# chart's topic Job (both mount this script and topics.txt).
# Environment: KAFKA_BROKERS (required), TOPIC_PREFIX, TOPICS_FILE (default: beside this script),
#   TOPIC_REPLICATION (default 1), KAFKA_SECURITY_PROTOCOL (plaintext|ssl|sasl_plaintext|sasl_ssl),
#   KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE,
#   KAFKA_SSL_CA_LOCATION (PEM file), KAFKA_TOPICS_BIN (default /opt/kafka/bin/kafka-topics.sh).
# The variables are the services' own (services/common/service.c), so one Secret serves both.
# Partition counts only grow: an existing topic with fewer partitions is raised to the listed count.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
topics=${TOPICS_FILE:-$here/topics.txt}
bin=${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}
: "${KAFKA_BROKERS:?KAFKA_BROKERS: required (host:port[,host:port])}"
prefix=${TOPIC_PREFIX:-}
rf=${TOPIC_REPLICATION:-1}

props=$(mktemp)
trap 'rm -f "$props"' EXIT
proto=$(printf '%s' "${KAFKA_SECURITY_PROTOCOL:-plaintext}" | tr '[:lower:]' '[:upper:]')
echo "security.protocol=$proto" >"$props"
case "$proto" in
  SASL_*)
    pass=${KAFKA_SASL_PASSWORD:-}
    if [ -n "${KAFKA_SASL_PASSWORD_FILE:-}" ]; then pass=$(cat "$KAFKA_SASL_PASSWORD_FILE"); fi
    mech=${KAFKA_SASL_MECHANISM:?KAFKA_SASL_MECHANISM: required with SASL}
    module=org.apache.kafka.common.security.scram.ScramLoginModule
    [ "$mech" = PLAIN ] && module=org.apache.kafka.common.security.plain.PlainLoginModule
    echo "sasl.mechanism=$mech" >>"$props"
    printf 'sasl.jaas.config=%s required username="%s" password="%s";\n' \
      "$module" "${KAFKA_SASL_USERNAME:?KAFKA_SASL_USERNAME: required with SASL}" "$pass" >>"$props"
    ;;
esac
if [ -n "${KAFKA_SSL_CA_LOCATION:-}" ]; then
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_SSL_CA_LOCATION" >>"$props"
fi

n=0
while read -r name partitions policy _; do
  case "$name" in ''|'#'*) continue ;; esac
  topic="$prefix$name"
  echo "create-topics: $topic partitions=$partitions cleanup.policy=$policy replication=$rf"
  "$bin" --bootstrap-server "$KAFKA_BROKERS" --command-config "$props" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$rf" \
    --config "cleanup.policy=$policy"
  have=$("$bin" --bootstrap-server "$KAFKA_BROKERS" --command-config "$props" --describe \
    --topic "$topic" | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9]*\).*/\1/p' | head -n1)
  if [ -n "$have" ] && [ "$have" -lt "$partitions" ]; then
    "$bin" --bootstrap-server "$KAFKA_BROKERS" --command-config "$props" --alter \
      --topic "$topic" --partitions "$partitions"
  fi
  n=$((n + 1))
done <"$topics"
echo "create-topics: $n topics ready (prefix '$prefix')"
