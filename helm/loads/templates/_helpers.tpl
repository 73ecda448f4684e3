{{/*
Names. Kubernetes object names are DNS labels of at most 63 characters; the suffixed names are cut
again after the suffix, so that a long release name still gives valid names.
*/}}
{{- define "loads.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loads.fullname" -}}
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

{{/* "<fullname>-<suffix>"; call with (dict "ctx" $ "suffix" "controller"). */}}
{{- define "loads.componentName" -}}
{{- printf "%s-%s" (include "loads.fullname" .ctx) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loads.controllerName" -}}
{{- include "loads.componentName" (dict "ctx" . "suffix" "controller") }}
{{- end }}

{{- define "loads.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels; call with (dict "ctx" $ "component" "controller"), component optional (objects shared by
all components have none). Selector labels
leave out the version and the chart: a Deployment's selector cannot change, and these do on every
upgrade.
*/}}
{{- define "loads.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loads.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with get . "component" }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "loads.labels" -}}
helm.sh/chart: {{ include "loads.chart" .ctx }}
{{ include "loads.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: loads
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels of a workload's pods: its labels plus its podLabels value (key "podLabels"). */}}
{{- define "loads.podLabels" -}}
{{ include "loads.labels" . }}
{{- with get . "podLabels" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference: [registry/]repository/name:tag; call with (dict "ctx" $ "name" "loads-worker").
The three images share the tag, because the controller, the workers and the runner speak one
protocol version.
*/}}
{{- define "loads.image" -}}
{{- $image := .ctx.Values.image }}
{{- $repository := required "image.repository is required: the path in front of the image names (for example localhost, or an organisation in a registry)" $image.repository }}
{{- $tag := $image.tag | default .ctx.Chart.AppVersion }}
{{- if $image.registry }}
{{- printf "%s/%s/%s:%s" $image.registry $repository .name $tag }}
{{- else }}
{{- printf "%s/%s:%s" $repository .name $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding api-token and worker-token: the user's, or the one this chart generates. */}}
{{- define "loads.tokensSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- include "loads.componentName" (dict "ctx" . "suffix" "tokens") }}
{{- end }}
{{- end }}

{{/*
Generates the two tokens once per render and keeps them in .Values, which every template of the
render shares. randAlphaNum gives new values on each call: without this, the checksum/secret
annotation (which renders the Secret template again) would hash other tokens than the Secret
holds. Outputs nothing.
*/}}
{{- define "loads.generateTokens" -}}
{{- if not (hasKey .Values "loadsGeneratedTokens") }}
{{- $_ := set .Values "loadsGeneratedTokens" (dict "api" (randAlphaNum 32) "worker" (randAlphaNum 32)) }}
{{- end }}
{{- end }}

{{/*
checksum/secret for pod annotations, so that pods restart when the generated tokens change (which
is on every upgrade: see README.md). Nothing with auth.existingSecret, whose content the chart
does not know.
*/}}
{{- define "loads.secretChecksum" -}}
{{- if not .Values.auth.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/tokens-secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Security contexts of every pod and container: the images run as uid/gid 10001, and nothing needs
root, a writable root filesystem or any capability (the only writes go to the /tmp emptyDir).
*/}}
{{- define "loads.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "loads.containerSecurityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Scheduling values of a workload; call with its values (controller, worker, tests). */}}
{{- define "loads.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
