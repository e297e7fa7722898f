{{/* Names, labels and the security context every Vigie pod shares. */}}

{{- define "vigie.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vigie.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vigie.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vigie.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigie
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "ingest"). */}}
{{- define "vigie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigie.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vigie.componentLabels" -}}
{{ include "vigie.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image of ours: (dict "root" $ "name" "vigie-ingest"). */}}
{{- define "vigie.image" -}}
{{- $image := .root.Values.image -}}
{{- $ref := printf "%s:%s" .name ($image.tag | default .root.Chart.AppVersion) -}}
{{- if $image.registry }}{{ $ref = printf "%s/%s" (trimSuffix "/" $image.registry) $ref }}{{ end -}}
{{- with get ($image.digests | default dict) .name }}{{ $ref = printf "%s@%s" $ref . }}{{ end -}}
{{ $ref }}
{{- end }}

{{/* The Pod Security Standard "restricted", at pod level. */}}
{{- define "vigie.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ... and at container level. */}}
{{- define "vigie.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Names the NATS chart's values refer to (through $tplYaml, in the NATS chart's context): they depend on the
release name only, so that both charts compute the same.
*/}}
{{- define "vigie.natsUsersSecretName" -}}
{{- $global := .Values.global | default dict -}}
{{- $vigie := $global.vigie | default dict -}}
{{- $vigie.natsUsersSecret | default (printf "%s-nats-users" .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "vigie.natsAuthConfigMapName" -}}
{{- printf "%s-nats-auth" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* The NATS URL the services connect to. */}}
{{- define "vigie.natsUrl" -}}
{{- if .Values.messaging.url -}}
{{ .Values.messaging.url }}
{{- else if .Values.nats.enabled -}}
{{- $name := printf "%s-nats" .Release.Name -}}
{{- if contains "nats" .Release.Name }}{{ $name = .Release.Name }}{{ end -}}
{{- $name = .Values.nats.fullnameOverride | default $name | trunc 63 | trimSuffix "-" -}}
nats://{{ $name }}.{{ .Release.Namespace }}.svc:4222
{{- else -}}
{{- fail "messaging.url: set the URL of your NATS server when nats.enabled is false" -}}
{{- end -}}
{{- end }}

{{/* The NATS server pods of the bundled chart (for NetworkPolicies). */}}
{{- define "vigie.natsSelector" -}}
app.kubernetes.io/name: nats
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: nats
{{- end }}

{{- define "vigie.tritonName" -}}
{{- printf "%s-triton" (include "vigie.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "vigie.postgresqlSecretName" -}}
{{- .Values.postgresql.existingSecret | default (printf "%s-postgresql" (include "vigie.fullname" .)) -}}
{{- end }}

{{- define "vigie.cnpgName" -}}
{{- printf "%s-postgresql" (include "vigie.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end }}

{{- define "vigie.natsConfJson" -}}
{{- /* JSON is NATS configuration, once Go's HTML-safe escapes (\u003e for ">") are undone: the NATS parser
knows no \u escape. */ -}}
{{- toJson . | replace "\\u003e" ">" | replace "\\u003c" "<" | replace "\\u0026" "&" -}}
{{- end }}
