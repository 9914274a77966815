{{/* Names. */}}
{{- define "tarn.fullname" -}}
{{- if contains "tarn" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tarn" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tarn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: tarn
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "gateway"). */}}
{{- define "tarn.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: tarn
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every pod of this release (for NetworkPolicies). */}}
{{- define "tarn.releasePods" -}}
app.kubernetes.io/name: tarn
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tarn.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tarn.clusterSecret" -}}
{{- default (printf "%s-cluster" (include "tarn.fullname" .)) .Values.clusterCredentials.existingSecret -}}
{{- end -}}

{{- define "tarn.authSecret" -}}
{{- default (printf "%s-auth" (include "tarn.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "tarn.lakeSecret" -}}
{{- if .Values.lake.credentials.existingSecret -}}
{{- .Values.lake.credentials.existingSecret -}}
{{- else if .Values.lake.credentials.env -}}
{{- printf "%s-lake" (include "tarn.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The lake is a directory (needs a shared volume) rather than a URL. */}}
{{- define "tarn.lakeIsDir" -}}
{{- if hasPrefix "/" .Values.lake.url -}}true{{- end -}}
{{- end -}}

{{/* Coordinator pods' stable addresses, comma-separated: roles follow the leader among them. */}}
{{- define "tarn.coordinators" -}}
{{- $full := include "tarn.fullname" . -}}
{{- $list := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $list = append $list (printf "%s-coordinator-%d.%s-coordinator.%s.svc:%d" $full $i $full $.Release.Namespace (int $.Values.coordinator.port)) -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{- define "tarn.etcdEndpoints" -}}
{{- if .Values.etcd.bundled -}}
{{- $full := include "tarn.fullname" . -}}
{{- $list := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $list = append $list (printf "http://%s-etcd-%d.%s-etcd.%s.svc:2379" $full $i $full $.Release.Namespace) -}}
{{- end -}}
{{- join "," $list -}}
{{- else -}}
{{- required "etcd.external.endpoints is needed when etcd.bundled is false" (join "," .Values.etcd.external.endpoints) -}}
{{- end -}}
{{- end -}}

{{/* Environment every Tarn container gets. */}}
{{- define "tarn.env" -}}
- name: TARN_CONFIG
  value: /etc/tarn/tarn.toml
- name: TARN_LOG_JSON
  value: {{ .Values.logJson | quote }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
{{- end -}}

{{- define "tarn.envFrom" -}}
{{- with include "tarn.lakeSecret" . }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end -}}

{{/* Volumes every Tarn pod mounts: the configuration, scratch space, the lake directory. */}}
{{- define "tarn.volumes" -}}
- name: config
  configMap:
    name: {{ include "tarn.fullname" . }}-config
- name: tmp
  emptyDir: {}
{{- if include "tarn.lakeIsDir" . }}
- name: lake
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-lake" (include "tarn.fullname" .)) .Values.lake.persistence.existingClaim }}
{{- end }}
{{- end -}}

{{- define "tarn.volumeMounts" -}}
- name: config
  mountPath: /etc/tarn
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "tarn.lakeIsDir" . }}
- name: lake
  mountPath: {{ .Values.lake.url }}
{{- end }}
{{- end -}}

{{/* The cluster credentials one role reads: include with (list $ "executor"). */}}
{{- define "tarn.clusterVolume" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
- name: cluster
  secret:
    secretName: {{ include "tarn.clusterSecret" $ }}
    defaultMode: 0400
    items:
      - {key: ca.pem, path: ca.pem}
      - {key: {{ $role }}.pem, path: {{ $role }}.pem}
      - {key: {{ $role }}.key, path: {{ $role }}.key}
      {{- if ne $role "gateway" }}
      - {key: reservation.key, path: reservation.key}
      {{- end }}
{{- end -}}

{{/* Pool checks: what the pool may offer must fit its cap. */}}
{{- define "tarn.checkPools" -}}
{{- $caps := dict "interactive" (int .Values.config.coordinator.interactive_pool_vcores) "job" (int .Values.config.coordinator.job_pool_vcores) -}}
{{- range $pool := list "interactive" "job" -}}
{{- $e := index $.Values.executors $pool -}}
{{- $n := int $e.replicas -}}
{{- if $.Values.autoscaling.enabled -}}{{- $n = int (index $.Values.autoscaling $pool).maxReplicas -}}{{- end -}}
{{- $offer := mul $n (int $e.vcores) -}}
{{- if gt $offer (index $caps $pool) -}}
{{- fail (printf "the %s pool would offer %d vCores (%d executors x %d), more than its cap of %d (config.coordinator.%s_pool_vcores): lower executors.%s.replicas, executors.%s.vcores or autoscaling.%s.maxReplicas" $pool $offer $n (int $e.vcores) (index $caps $pool) $pool $pool $pool $pool) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* One TOML value (Helm reads numbers as floats: whole ones are written as integers). */}}
{{- define "tarn.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ $v | toJson }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if kindIs "slice" $v -}}[{{ range $i, $x := $v }}{{ if $i }}, {{ end }}{{ include "tarn.tomlValue" $x }}{{ end }}]
{{- else -}}{{ fail (printf "config values must be strings, numbers, booleans, lists or tables, not %s" (kindOf $v)) }}
{{- end -}}
{{- end -}}

{{/* A section of the configuration file: include with (list "gateway" $values). */}}
{{- define "tarn.tomlSection" -}}
{{- $name := index . 0 -}}
{{- $table := index . 1 | default dict -}}
[{{ $name }}]
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "tarn.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if kindIs "map" $v }}

[{{ $name }}.{{ $k }}]
{{- range $kk := keys $v | sortAlpha }}
{{ $kk }} = {{ include "tarn.tomlValue" (index $v $kk) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tarn.previousKeyFiles" -}}
{{- $files := list -}}
{{- range .Values.auth.previousKeySecretKeys -}}
{{- $files = append $files (printf "/var/run/tarn/auth/%s" .) -}}
{{- end -}}
{{- join "," $files -}}
{{- end -}}

{{/* Labels of kernel pods: not the release's pod labels (see the
     NetworkPolicies), so a kernel is never let in where Tarn's pods are. */}}
{{- define "tarn.kernelSelector" -}}
app.kubernetes.io/name: tarn-kernel
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The kernel pod template (YAML; the ConfigMap holds it as JSON). */}}
{{- define "tarn.kernelPod" -}}
{{- $k := .Values.pythonKernels -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "tarn.fullname" . }}-kernel
  labels:
    {{- include "tarn.kernelSelector" . | nindent 4 }}
    app.kubernetes.io/component: python-kernel
    app.kubernetes.io/managed-by: tarn-gateway
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 0
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets: {{ toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: kernel
      image: {{ default (include "tarn.image" .) $k.image }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: [{{ $k.python | quote }}, "-m", "tarn_provider.pod"]
      env:
        - {name: HOME, value: /home/kernel}
        - {name: PYTHONUNBUFFERED, value: "1"}
        - name: TARN_KERNEL_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
      ports:
        - {name: shell, containerPort: 52000}
        - {name: iopub, containerPort: 52001}
        - {name: stdin, containerPort: 52002}
        - {name: control, containerPort: 52003}
        - {name: hb, containerPort: 52004}
      resources:
        {{- toYaml $k.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities: {drop: [ALL]}
      volumeMounts:
        - {name: home, mountPath: /home/kernel}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: home
      emptyDir: {sizeLimit: {{ $k.homeSize }}}
    - name: tmp
      emptyDir: {medium: Memory, sizeLimit: 256Mi}
  {{- with $k.nodeSelector }}
  nodeSelector: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with $k.tolerations }}
  tolerations: {{ toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
