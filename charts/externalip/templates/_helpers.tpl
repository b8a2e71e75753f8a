{{/* Labels of every object; selectors use only name + component (immutable). */}}
{{- define "externalip.labels" -}}
app.kubernetes.io/name: externalip
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "externalip.selector" -}}
app.kubernetes.io/name: externalip
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "externalip.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Settings every program takes. */}}
{{- define "externalip.commonEnv" -}}
{{- $host := .Values.metricsHost | default "" }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
- {name: EXTERNALIP_METRICS_ADDR, value: {{ printf "%s:%v" $host .Values.metricsPort | quote }}}
{{- if .Values.metricsHost }}
- name: POD_IP
  valueFrom:
    fieldRef: {fieldPath: status.podIP}
- {name: EXTERNALIP_HEALTH_ADDR, value: {{ printf "$(POD_IP):%v" .Values.healthPort | quote }}}
{{- end }}
{{- if .Values.metricsAuth }}
- {name: EXTERNALIP_METRICS_AUTH, value: "true"}
{{- end }}
- {name: EXTERNALIP_LOG_FORMAT, value: {{ .Values.logFormat | quote }}}
- {name: EXTERNALIP_LOG_LEVEL, value: {{ .Values.logLevel | quote }}}
{{- end }}

{{- define "externalip.probes" -}}
ports:
  - {name: metrics, containerPort: {{ .Values.metricsPort }}, protocol: TCP}
{{- $probe := "metrics" }}
{{- if .Values.metricsHost }}
{{- $probe = "health" }}
  - {name: health, containerPort: {{ .Values.healthPort }}, protocol: TCP}
{{- end }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ $probe }}}
  initialDelaySeconds: 5
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ $probe }}}
  periodSeconds: 5
{{- end }}

{{/* Programs that change node addresses: root with NET_ADMIN and NET_RAW only, never
privileged; `extra` adds capabilities a value asked for (SYS_NICE: real-time heartbeats). */}}
{{- define "externalip.netSecurityContext" -}}
runAsUser: 0
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
  add: {{ concat (list "NET_ADMIN" "NET_RAW") (.extra | default list) | toJson }}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* Pod settings of the programs that run on the selected nodes' host network. */}}
{{- define "externalip.hostPod" -}}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
terminationGracePeriodSeconds: 10
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The RBAC objects of one program, taken from deploy/rbac/<program>.yaml (the
chart's files/rbac/ links to it), so the chart and `kubectl apply -k deploy/`
can never grant different permissions. Only namespaces are rewritten to the
release namespace.
*/}}
{{- define "externalip.rbacFrom" -}}
{{- $ns := .root.Release.Namespace }}
{{- $text := .root.Files.Get (printf "files/rbac/%s.yaml" .program) }}
{{- if not $text }}{{ fail (printf "files/rbac/%s.yaml is missing or empty" .program) }}{{ end }}
{{- range $doc := regexSplit "(?m)^---\\s*$" $text -1 }}
{{- $obj := fromYaml $doc }}
{{- if $obj }}
{{- if $obj.metadata.namespace }}{{ $_ := set $obj.metadata "namespace" $ns }}{{ end }}
{{- range $s := ($obj.subjects | default list) }}
{{- if eq $s.kind "ServiceAccount" }}{{ $_ := set $s "namespace" $ns }}{{ end }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}
