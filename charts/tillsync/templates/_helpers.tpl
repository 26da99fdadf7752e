{{/* Release-scoped name of a service's objects: <release>-<service>, at most 63 characters. */}}
{{- define "tillsync.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .svc | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What each service connects to (services/<svc>/main.c: .kafka/.postgres/.redis; checked by
     tests/static/deploy.sh). Not a value: it follows the code, not the tenant. */}}
{{- define "tillsync.needs" -}}
pos-ingest: {kafka: true, postgres: true, redis: false}
shop-connector: {kafka: true, postgres: true, redis: true}
inventory-ledger: {kafka: true, postgres: true, redis: true}
loyalty-sync: {kafka: true, postgres: true, redis: true}
recon-reporter: {kafka: true, postgres: true, redis: false}
{{- end -}}

{{- define "tillsync.labels" -}}
app.kubernetes.io/name: tillsync
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
tillsync.io/tenant: {{ .root.Values.tenant.id | quote }}
{{- if .svc }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}
{{- end -}}

{{- define "tillsync.selector" -}}
app.kubernetes.io/name: tillsync
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "tillsync.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .svc (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "tillsync.topicPrefix" -}}
{{- default (printf "%s." .Values.tenant.id) .Values.tenant.topicPrefix -}}
{{- end -}}

{{/* The chart's own Secret (database, Redis, SASL, platform keys given as values). */}}
{{- define "tillsync.secretName" -}}
{{- printf "%s-secrets" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "tillsync.postgresSecret" -}}
{{- default (include "tillsync.secretName" .) .Values.postgres.existingSecret -}}
{{- end -}}
{{- define "tillsync.redisSecret" -}}
{{- default (include "tillsync.secretName" .) .Values.redis.existingSecret -}}
{{- end -}}
{{- define "tillsync.saslSecret" -}}
{{- default (include "tillsync.secretName" .) .Values.kafka.sasl.existingSecret -}}
{{- end -}}
{{- define "tillsync.platformSecret" -}}
{{- default (include "tillsync.secretName" .) .Values.platformSecrets.existingSecret -}}
{{- end -}}

{{/* Kafka variables shared by the services and the topic Job. */}}
{{- define "tillsync.kafkaEnv" -}}
- name: KAFKA_BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.sasl.username | quote }}
{{- if hasPrefix "sasl" .Values.kafka.securityProtocol }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tillsync.saslSecret" . }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- else }}
- name: KAFKA_SASL_PASSWORD
  value: ""
{{- end }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ if .Values.kafka.tls.caSecret }}{{ printf "/etc/tillsync/kafka-ca/%s" .Values.kafka.tls.caKey | quote }}{{ else }}""{{ end }}
{{- end -}}

{{/* Every variable a service reads: the common ones, its connections, then its own `env` and
     `secretEnv`. Empty values mean "unset" to the services (services/common/config.c). */}}
{{- define "tillsync.env" -}}
{{- $root := .root -}}
{{- $needs := index (include "tillsync.needs" $root | fromYaml) .svc -}}
{{- $cfg := index $root.Values.services .svc -}}
- name: TENANT_ID
  value: {{ $root.Values.tenant.id | quote }}
- name: TOPIC_PREFIX
  value: {{ include "tillsync.topicPrefix" $root | quote }}
- name: HTTP_LISTEN
  value: "0.0.0.0:8080"
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{ include "tillsync.kafkaEnv" $root }}
{{- if $needs.postgres }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tillsync.postgresSecret" $root }}
      key: {{ $root.Values.postgres.urlKey }}
- name: MIGRATIONS_DIR
  value: /usr/share/tillsync/migrations
{{- end }}
{{- if $needs.redis }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tillsync.redisSecret" $root }}
      key: {{ $root.Values.redis.urlKey }}
{{- end }}
{{- range $name, $value := $cfg.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $key := $cfg.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tillsync.platformSecret" $root }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}
