{{/*
What each Vigie service is, fixed by the chart rather than by values, so that no value can widen the
inference boundary: only ingest reaches cameras, only inference reaches Triton, only the services that
store anonymous data reach the database.

- partitioned: a StatefulSet whose replica k consumes partition k (pod ordinal -> VIGIE_<SVC>_PARTITION)
- cameras: egress to the camera networks
- triton: egress to Triton's gRPC port
- api: serves an HTTP API the Ingress routes to
- database: a PostgreSQL URL in VIGIE_<SVC>_<postgresql.urlEnv>, egress to the database
- singleReader: never two pods at once, even during a rollout (each would read every camera)
- sharded: with replicas > 1, a StatefulSet whose replica k reads shard k of the registry's cameras (pod
  ordinal -> VIGIE_<SVC>_SOURCES__SHARD_INDEX) and no static camera; at most one pod per ordinal, even
  during a rollout, so no camera is read twice (vigie.shards)
*/}}
{{- define "vigie.traits" -}}
ingest:
  cameras: true
  singleReader: true
  sharded: true
inference:
  partitioned: true
  triton: true
anonymiser:
  partitioned: true
aggregation:
  api: true
  database: true
registry:
  api: true
  database: true
audit:
  api: true
  database: true
{{- end }}

{{/*
The number of shards a component runs as, or "" when it runs as one reader: (dict "root" $ "component"
name). Refuses what would read a camera more than once or not at all: every shard would read the static
cameras of its settings, and without the registry's cameras there is nothing to share. The shard settings
are the chart's, from replicas, even at 1 (a lone replica told it is one shard of two reads half).
*/}}
{{- define "vigie.shards" -}}
{{- $values := get .root.Values.components .component -}}
{{- $traits := get (include "vigie.traits" .root | fromYaml) .component -}}
{{- if and $values.enabled $traits.sharded -}}
{{- $field := printf "components.%s" .component -}}
{{- $replicas := int $values.replicas -}}
{{- $settings := $values.settings | default dict -}}
{{- range $key := list "shard_index" "shard_count" -}}
{{- if hasKey ($settings.sources | default dict) $key -}}
{{- fail (printf "%s.settings.sources.%s: set by the chart from %s.replicas" $field $key $field) -}}
{{- end -}}
{{- end -}}
{{- if gt $replicas 1 -}}
{{- if not .root.Values.sourceKey.existingSecret -}}
{{- fail (printf "%s.replicas: %d shards share the cameras the registry declares: set sourceKey.existingSecret (README.md, \"Scaling ingest\"), or keep replicas at 1" $field $replicas) -}}
{{- end -}}
{{- if not $values.registryCameras -}}
{{- fail (printf "%s.replicas: %d shards share the cameras the registry declares: set %s.registryCameras to true, or keep replicas at 1" $field $replicas $field) -}}
{{- end -}}
{{- if $settings.cameras -}}
{{- fail (printf "%s.settings.cameras: each of the %d shards would read these cameras: declare them in the registry (each is then read by one shard), or keep replicas at 1" $field $replicas) -}}
{{- end -}}
{{- $variable := printf "VIGIE_%s_CAMERAS" (upper .component) -}}
{{- if hasKey ($values.env | default dict) $variable -}}
{{- fail (printf "%s.env.%s: each of the %d shards would read these cameras; sharded, the chart sets it to []" $field $variable $replicas) -}}
{{- end -}}
{{ $replicas }}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "vigie.componentFullname" -}}
{{- printf "%s-%s" (include "vigie.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* The Secret with a component's settings.toml, or "" when it has none: (dict "root" $ "component" name). */}}
{{- define "vigie.settingsSecretName" -}}
{{- $values := get .root.Values.components .component -}}
{{- if $values.existingSettingsSecret -}}
{{ $values.existingSettingsSecret }}
{{- else if $values.settings -}}
{{ include "vigie.componentFullname" . }}-settings
{{- end -}}
{{- end }}

{{/* The environment of a component's container: (dict "root" $ "component" name). */}}
{{- define "vigie.componentEnv" -}}
{{- $root := .root -}}
{{- $name := .component -}}
{{- $values := get $root.Values.components $name -}}
{{- $traits := get (include "vigie.traits" $root | fromYaml) $name -}}
{{- $prefix := printf "VIGIE_%s_" (upper $name) -}}
- name: {{ $prefix }}NATS__URL
  value: {{ include "vigie.natsUrl" $root | quote }}
- name: {{ $prefix }}NATS__USER
  value: {{ $name | quote }}
- name: {{ $prefix }}NATS__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "vigie.natsUsersSecretName" $root }}
      key: {{ $name }}
- name: {{ $prefix }}HTTP__HOST
  value: "0.0.0.0"
- name: {{ $prefix }}HTTP__PORT
  value: "8080"
- name: {{ $prefix }}LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- with $root.Values.telemetry.otlpEndpoint }}
- name: {{ $prefix }}TELEMETRY__OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if eq $name "ingest" }}
# A file camera's position (a few bytes, no frame): kept in the pod's /tmp (an emptyDir in memory), which
# outlives a container restart, so that a killed ingest goes on where it stopped.
- name: {{ $prefix }}STATE_DIR
  value: /tmp/vigie-ingest
{{- end }}
{{- if $traits.partitioned }}
- name: {{ $prefix }}PARTITION
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
- name: {{ $prefix }}PARTITIONS
  value: {{ $values.replicas | quote }}
{{- end }}
{{- with include "vigie.shards" . }}
# Pod ordinal k reads shard k of the registry's cameras (a stable hash of the camera id), and no static
# camera: the chart cannot see into an existing settings Secret, and each shard would read its cameras.
- name: {{ $prefix }}SOURCES__SHARD_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
- name: {{ $prefix }}SOURCES__SHARD_COUNT
  value: {{ . | quote }}
- name: {{ $prefix }}CAMERAS
  value: "[]"
{{- end }}
{{- if eq $name "ingest" }}
# As many FRAMES partitions as inference replicas: replica k consumes partition k.
- name: {{ $prefix }}FRAMES_PARTITIONS
  value: {{ $root.Values.components.inference.replicas | quote }}
{{- end }}
{{- $sourceKey := $root.Values.sourceKey }}
{{- if and $sourceKey.existingSecret (eq $name "registry") }}
# The key sealing the cameras' source URLs, at rest and in the bucket vigie-sources (shared with ingest).
- name: {{ $prefix }}SOURCE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $sourceKey.existingSecret }}
      key: {{ $sourceKey.key }}
{{- end }}
{{- if and $sourceKey.existingSecret (eq $name "ingest") $values.registryCameras }}
# The cameras the registry declares, read live from the bucket vigie-sources, opened with the registry's key.
- name: {{ $prefix }}SOURCES__ENABLED
  value: "true"
- name: {{ $prefix }}SOURCES__SOURCE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $sourceKey.existingSecret }}
      key: {{ $sourceKey.key }}
{{- end }}
{{- if eq $name "inference" }}
# As many TRACKS partitions as anonymiser replicas: anonymiser replica k consumes partition k.
- name: {{ $prefix }}TRACKS_PARTITIONS
  value: {{ $root.Values.components.anonymiser.replicas | quote }}
{{- end }}
{{- if and (eq $name "registry") $root.Values.ingress.enabled }}
# Behind the Ingress: the citizen's address is the last X-Forwarded-For hop (the objection rate limit is
# per client), believed only from the controller's networks, and the signs' QR codes point to the city's
# host.
- name: {{ $prefix }}OBJECTION__FORWARDED_HOPS
  value: "1"
- name: {{ $prefix }}OBJECTION__TRUSTED_PROXIES
  value: {{ $root.Values.ingress.trustedProxies | toJson | quote }}
- name: {{ $prefix }}PUBLIC__BASE_URL
  value: {{ printf "%s://%s" (ternary "https" "http" (ne $root.Values.ingress.tlsSecretName "")) $root.Values.ingress.host | quote }}
{{- end }}
{{- if $traits.triton }}
- name: {{ $prefix }}TRITON_URL
  value: {{ printf "%s.%s.svc:8001" (include "vigie.tritonName" $root) $root.Release.Namespace | quote }}
{{- end }}
{{- if $traits.database }}
{{- $postgresql := $root.Values.postgresql }}
{{- if $postgresql.cnpg.enabled }}
{{- $cluster := include "vigie.cnpgName" $root }}
- name: PGUSER
  valueFrom:
    secretKeyRef: {name: {{ $cluster }}-app, key: username}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $cluster }}-app, key: password}
- name: {{ $prefix }}{{ $postgresql.urlEnv }}
  value: {{ printf "%s://$(PGUSER):$(PGPASSWORD)@%s-rw.%s.svc:5432/%s" $postgresql.cnpg.driver $cluster $root.Release.Namespace $postgresql.cnpg.database | quote }}
{{- else }}
- name: {{ $prefix }}{{ $postgresql.urlEnv }}
  valueFrom:
    secretKeyRef:
      name: {{ include "vigie.postgresqlSecretName" $root }}
      key: {{ get $postgresql.urlKeys $name | default "url" }}
{{- end }}
{{- if $postgresql.schemaPerService }}
- name: {{ $prefix }}{{ $postgresql.schemaEnv }}
  value: {{ $name | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := $values.env }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
