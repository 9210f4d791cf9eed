{{/* Chart name, overridable. */}}
{{- define "vision-node-daemon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, else
<release>-<chart>; at most 63 characters (a DNS label), overridable.
*/}}
{{- define "vision-node-daemon.fullname" -}}
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

{{- define "vision-node-daemon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the release's lifetime (a DaemonSet's selector is immutable). */}}
{{- define "vision-node-daemon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vision-node-daemon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "vision-node-daemon.labels" -}}
helm.sh/chart: {{ include "vision-node-daemon.chart" . }}
{{ include "vision-node-daemon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: vision-node-daemon
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vision-node-daemon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vision-node-daemon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vision-node-daemon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the config file is mounted in the container. */}}
{{- define "vision-node-daemon.configDir" -}}
/etc/vision-node-daemon
{{- end }}

{{/*
The daemon's config (config/example.yaml's schema): values.config plus
`domain`, plus gpus.nvml_library in driverHostPath mode. node_name is left
out: the daemon takes it from $NODE_NAME (the downward API).
*/}}
{{- define "vision-node-daemon.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "domain" .Values.domain }}
{{- if .Values.driverHostPath.enabled }}
{{- $gpus := deepCopy (default dict $cfg.gpus) }}
{{- if not $gpus.nvml_library }}
{{- $_ := set $gpus "nvml_library" (printf "%s/libnvidia-ml.so.1" (trimSuffix "/" .Values.driverHostPath.mountPath)) }}
{{- end }}
{{- $_ := set $cfg "gpus" $gpus }}
{{- end }}
{{- if .Values.runtime.triton.enabled }}
{{- $t := .Values.runtime.triton }}
{{- $runtime := dict "kind" "triton" "endpoint" (printf "127.0.0.1:%v" $t.grpcPort) "model_repository" $t.modelRepository.mountPath }}
{{- range $key := list "load_timeout" "health_interval" "reconcile_interval" "measure_memory" }}
{{- with index (default dict $cfg.runtime) $key }}
{{- $_ := set $runtime $key . }}
{{- end }}
{{- end }}
{{- /* Pods reach Triton at the node's IP (hostPort): the daemon expands $(HOST_IP), set from the Downward API. */}}
{{- if $t.clientEndpoint }}
{{- $_ := set $runtime "client_endpoint" $t.clientEndpoint }}
{{- else if $t.hostPort }}
{{- $_ := set $runtime "client_endpoint" (printf "$(HOST_IP):%v" $t.grpcPort) }}
{{- else }}
{{- fail "runtime.triton.clientEndpoint is required without hostPort: an address the node's pods reach Triton at (e.g. a Service with internalTrafficPolicy: Local)" }}
{{- end }}
{{- $_ := set $cfg "runtime" $runtime }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Selector labels of an optional component (extender, scheduler): its own
app.kubernetes.io/name, so that neither the DaemonSet's selector nor the
metrics Service ever matches its pods. Call with (list $ "extender").
*/}}
{{- define "vision-node-daemon.componentSelectorLabels" -}}
{{- $ := index . 0 }}
app.kubernetes.io/name: {{ printf "%s-%s" (include "vision-node-daemon.name" $) (index . 1) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ $.Release.Name }}
{{- end }}

{{/* Standard labels of an optional component. Call with (list $ "extender"). */}}
{{- define "vision-node-daemon.componentLabels" -}}
{{- $ := index . 0 }}
helm.sh/chart: {{ include "vision-node-daemon.chart" $ }}
{{ include "vision-node-daemon.componentSelectorLabels" . }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: vision-node-daemon
app.kubernetes.io/managed-by: {{ $.Release.Service }}
{{- end }}

{{/* The extender's objects' name (Deployment, Service, RBAC). */}}
{{- define "vision-node-daemon.extenderName" -}}
{{- printf "%s-extender" (include "vision-node-daemon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The second scheduler's objects' name. */}}
{{- define "vision-node-daemon.schedulerName" -}}
{{- printf "%s-scheduler" (include "vision-node-daemon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The kube-scheduler image: the tag defaults to the cluster's version
(vX.Y.Z, without a distribution's suffix such as -eks-… or +k3s1), as the
version skew policy wants a scheduler no newer than the API server.
*/}}
{{- define "vision-node-daemon.schedulerImage" -}}
{{- $tag := .Values.scheduler.image.tag }}
{{- if not $tag }}
{{- $tag = regexFind "^v[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version }}
{{- end }}
{{- printf "%s:%s" .Values.scheduler.image.repository $tag }}
{{- end }}

{{/*
kube-scheduler's configuration for the second scheduler: one profile and
the extender (kubescheduler.config.k8s.io/v1, Kubernetes >= 1.25).
*/}}
{{- define "vision-node-daemon.schedulerConfig" -}}
{{- $s := .Values.scheduler }}
{{- $e := .Values.extender -}}
# kube-scheduler's configuration: one profile, {{ $s.name }}, and the extender.
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: true
  resourceLock: leases
  resourceName: {{ $s.name }}
  resourceNamespace: {{ .Release.Namespace }}
profiles:
  - schedulerName: {{ $s.name }}
extenders:
  - urlPrefix: http://{{ include "vision-node-daemon.extenderName" . }}.{{ .Release.Namespace }}.svc:{{ $e.port }}
    filterVerb: filter
    prioritizeVerb: prioritize
    # Its 0..10 scores count x weight x 10 beside kube-scheduler's own
    # 0..100 node scores (see values.yaml).
    weight: {{ $e.weight }}
    nodeCacheCapable: {{ $e.nodeCacheCapable }}
    httpTimeout: {{ $e.httpTimeout }}
    # Scheduling goes on without the extender when it fails.
    ignorable: true
    # Only pods that ask for a slot are sent to the extender.
    managedResources:
      - name: {{ .Values.domain }}/slot
        ignoredByScheduler: false
{{- end }}

{{/* The model repository volume of the Triton container (runtime.triton). */}}
{{- define "vision-node-daemon.tritonRepositoryVolume" -}}
{{- $r := .Values.runtime.triton.modelRepository -}}
- name: triton-models
{{- if eq $r.type "hostPath" }}
  hostPath:
    path: {{ required "runtime.triton.modelRepository.hostPath is required with type hostPath" $r.hostPath }}
    type: Directory
{{- else if eq $r.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "runtime.triton.modelRepository.claimName is required with type pvc" $r.claimName }}
    readOnly: true
{{- else }}
{{- if not $r.volume }}{{ fail "runtime.triton.modelRepository.volume is required with type volume" }}{{ end }}
  {{- toYaml $r.volume | nindent 2 }}
{{- end }}
{{- end }}
