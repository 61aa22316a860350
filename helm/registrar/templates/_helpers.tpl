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
{{- with include "registrar.quota" (dict "root" . "config" $config) }}
{{- if not (hasSuffix "\n" $config) }}{{ "\n" }}{{ end }}
{{- "\n" }}{{ . }}
{{- end }}
{{- end }}

{{/*
The vendor quota shared by the replicas through Redis (docs/operations.md#shared-quota).
Takes (dict "root" $ "config" <the config text, rendered>) and renders the
[quota] table the chart adds to the config when quota.redis.enabled (nothing
otherwise). Included by registrar.config, so every render passes its checks;
it fails the render:
- when several replicas (replicaCount above 1, or the HPA) would each pace
  every target alone: neither quota.redis.enabled nor a [quota] table with
  redis_url in config shares the quota, so together they would send N times
  each vendor's quota;
- when quota.redis.enabled and config has a [quota] table of its own (TOML
  refuses a table defined twice; the chart does not guess which one is meant);
- when quota.redis.enabled and nothing provides REGISTRAR_REDIS_URL.
*/}}
{{- define "registrar.quota" -}}
{{- $v := .root.Values }}
{{- $q := $v.quota.redis }}
{{- /* the config's own [quota] table: from its header to the next line starting with "[" */}}
{{- $own := "" }}
{{- range regexSplit "(?m)^[ \\t]*\\[" .config -1 }}
{{- if regexMatch "^quota\\][ \\t]*(#[^\\n]*)?(\\r?\\n|$)" . }}
{{- $own = printf "[%s" . }}
{{- end }}
{{- end }}
{{- $shared := or $q.enabled (and $own (regexMatch "(?m)^[ \\t]*redis_url[ \\t]*=" $own)) }}
{{- if not $shared }}
{{- if $v.autoscaling.enabled }}
{{- $max := int $v.autoscaling.maxReplicas }}
{{- fail (printf "autoscaling.enabled is true (up to %d replicas) but the vendor quota is not shared: each replica would pace its targets alone and together send up to %d× each vendor's quota, and the vendor would throttle them all. Set quota.redis.enabled=true with REGISTRAR_REDIS_URL (docs/operations.md#shared-quota), or turn autoscaling off and keep replicaCount 1." $max $max) }}
{{- else if gt (int $v.replicaCount) 1 }}
{{- $n := int $v.replicaCount }}
{{- fail (printf "replicaCount is %d but the vendor quota is not shared: each replica would pace its targets alone and together send %d× each vendor's quota, and the vendor would throttle them all. Set quota.redis.enabled=true with REGISTRAR_REDIS_URL (docs/operations.md#shared-quota), or keep replicaCount 1." $n $n) }}
{{- end }}
{{- end }}
{{- if $q.enabled }}
{{- if $own }}
{{- fail "config has a [quota] table of its own while quota.redis.enabled is true: use one or the other. Either remove [quota] from config (the chart renders it from quota.redis.*, with redis_url = { env = \"REGISTRAR_REDIS_URL\" }), or set quota.redis.enabled=false and provide REGISTRAR_REDIS_URL yourself (docs/operations.md#shared-quota)." }}
{{- end }}
{{- $inExtraEnv := false }}
{{- range $v.extraEnv }}
{{- if and (kindIs "map" .) (eq (toString .name) "REGISTRAR_REDIS_URL") }}
{{- $inExtraEnv = true }}
{{- end }}
{{- end }}
{{- if $q.urlSecret.name }}
{{- if $inExtraEnv }}
{{- fail "REGISTRAR_REDIS_URL is both in extraEnv and taken from quota.redis.urlSecret: set one of them (docs/operations.md#shared-quota)." }}
{{- end }}
{{- else if not (or $inExtraEnv $v.existingSecret (get ($v.secrets | default dict) "REGISTRAR_REDIS_URL")) }}
{{- fail "quota.redis.enabled is true but nothing provides REGISTRAR_REDIS_URL, the URL of the Redis the replicas share the vendor quota through: set quota.redis.urlSecret.name (and .key) to a Secret holding it, or set secrets.REGISTRAR_REDIS_URL, or set existingSecret to a Secret holding REGISTRAR_REDIS_URL (docs/operations.md#shared-quota)." }}
{{- end }}
{{- /* before any heartbeat, assume as many replicas as there may be */}}
{{- $fallback := $q.fallbackReplicas }}
{{- if and (kindIs "invalid" $fallback) $v.autoscaling.enabled }}
{{- $fallback = $v.autoscaling.maxReplicas }}
{{- else if kindIs "invalid" $fallback }}
{{- $fallback = $v.replicaCount }}
{{- end }}
{{- /* the table itself, from its first line */ -}}
# [quota]: rendered by the chart from quota.redis.* (values.yaml)
[quota]
redis_url = { env = "REGISTRAR_REDIS_URL" }
fallback_replicas = {{ max 1 (int $fallback) }}
{{- with $q.permitTimeout }}
permit_timeout = {{ . | quote }}
{{- end }}
{{- end }}
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
