{{- /*
The provisioner's pod: the Job of each release revision and the CronJob that reconciles the streams both
run it (provisioner.yaml).
*/ -}}
{{- define "vigie.provisionerPod" -}}
{{- $ctx := dict "root" . "component" "provisioner" }}
{{- $values := .Values.provisioner -}}
metadata:
  labels:
    {{- include "vigie.componentLabels" $ctx | nindent 4 }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: OnFailure
  serviceAccountName: {{ include "vigie.fullname" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- include "vigie.podSecurityContext" dict | nindent 4 }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  containers:
    - name: provisioner
      # Any Vigie image carries vigie_core.
      image: {{ include "vigie.image" (dict "root" . "name" $values.image) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: [python, -m, vigie_core.provision]
      env:
        - name: VIGIE_PROVISION_NATS__URL
          value: {{ include "vigie.natsUrl" . | quote }}
        - name: VIGIE_PROVISION_NATS__USER
          value: provisioner
        - name: VIGIE_PROVISION_NATS__PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "vigie.natsUsersSecretName" . }}
              key: provisioner
        - name: VIGIE_PROVISION_LOG_LEVEL
          value: {{ .Values.logLevel | quote }}
        # As many FRAMES partitions as inference replicas, TRACKS partitions as anonymiser replicas.
        - name: VIGIE_PROVISION_FRAMES_PARTITIONS
          value: {{ .Values.components.inference.replicas | quote }}
        - name: VIGIE_PROVISION_TRACKS_PARTITIONS
          value: {{ .Values.components.anonymiser.replicas | quote }}
        # Copies of every stream and bucket, each on another NATS server.
        - name: VIGIE_PROVISION_STREAM_REPLICAS
          value: {{ $values.streamReplicas | quote }}
        {{- range $key, $value := $values.env }}
        - name: {{ $key }}
          value: {{ $value | toString | quote }}
        {{- end }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- include "vigie.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
