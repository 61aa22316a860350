{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "registrar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or the release name when it
already contains the chart name. Truncated to 63 characters.
*/}}
{{- define "registrar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "registrar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "registrar.labels" -}}
helm.sh/chart: {{ include "registrar.chart" . }}
{{ include "registrar.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "registrar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registrar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "registrar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registrar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository:tag, the tag defaulting to appVersion.
*/}}
{{- define "registrar.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Name of the Secret whose keys become environment variables: the existing
Secret when one is named, else the chart's own.
*/}}
{{- define "registrar.secretName" -}}
{{- if .Values.existingSecret }}
{{- tpl .Values.existingSecret . }}
{{- else }}
{{- include "registrar.fullname" . }}
{{- end }}
{{- end }}

{{/*
The rendered config.toml. Fails the render when [server] listen does not use
service.port, since the Service, container port and probes all target it.
*/}}
{{- define "registrar.config" -}}
{{- $config := tpl (required "config must hold the registrar config.toml" .Values.config) . }}
{{- $port := toString .Values.service.port }}
{{- if not (regexMatch (printf "(?m)^\\s*listen\\s*=\\s*\"[^\"]*:%s\"" $port) $config) }}
{{- fail (printf "config: [server] listen must use service.port (%s), e.g. listen = \"0.0.0.0:%s\"" $port $port) }}
{{- end }}
{{- $config }}
{{- end }}

{{/*
A native gRPC probe against grpc.health.v1.Health on the gRPC port.
Takes (dict "probe" <probe values> "port" <port number>); gRPC probes accept
a port number only, not a port name. "enabled" and "grpcService" are the
chart's own keys; every other key is passed through as a probe setting.
*/}}
{{- define "registrar.grpcProbe" -}}
grpc:
  port: {{ .port }}
  service: {{ .probe.grpcService | default "" | quote }}
{{- with omit .probe "enabled" "grpcService" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the `helm test` pod: not the selector labels, so neither the
Service, the PodDisruptionBudget nor the NetworkPolicy's podSelector count it
as a registrar pod.
*/}}
{{- define "registrar.testLabels" -}}
helm.sh/chart: {{ include "registrar.chart" . }}
app.kubernetes.io/name: {{ include "registrar.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
