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
*/}}
{{- define "vigie.traits" -}}
ingest:
  cameras: true
  singleReader: true
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
{{- if $traits.partitioned }}
- name: {{ $prefix }}PARTITION
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
- name: {{ $prefix }}PARTITIONS
  value: {{ $values.replicas | quote }}
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
# per client), and the signs' QR codes point to the city's host.
- name: {{ $prefix }}OBJECTION__FORWARDED_HOPS
  value: "1"
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
