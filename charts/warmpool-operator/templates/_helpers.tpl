{{/*
warmpool-operator.name: the chart name, or nameOverride.
*/}}
{{- define "warmpool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
warmpool-operator.fullname: release-qualified name of every object, at most 63 characters;
the release name alone when it already contains the chart name.
*/}}
{{- define "warmpool-operator.fullname" -}}
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
warmpool-operator.selectorLabels: the labels the operator Deployment selects its pods by (never change).
*/}}
{{- define "warmpool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warmpool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
warmpool-operator.labels: recommended labels of every object of the chart.
*/}}
{{- define "warmpool-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "warmpool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: warmpool
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
warmpool-operator.serviceAccountName: the operator's ServiceAccount.
*/}}
{{- define "warmpool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warmpool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
warmpool-operator.imageRef: an image block (`image` of the dict, with repository, tag, digest) as a reference:
the repository (behind global.imageRegistry when set) with the digest when given, else the tag (default
appVersion). `root` is the chart's context.
*/}}
{{- define "warmpool-operator.imageRef" -}}
{{- $repository := .image.repository }}
{{- with (.root.Values.global | default dict).imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
warmpool-operator.image: the operator image.
*/}}
{{- define "warmpool-operator.image" -}}
{{- include "warmpool-operator.imageRef" (dict "root" . "image" .Values.image) }}
{{- end }}

{{/*
warmpool-operator.imagePullSecrets: global.imagePullSecrets then imagePullSecrets, each name once,
as a pod's `imagePullSecrets` list (JSON).
*/}}
{{- define "warmpool-operator.imagePullSecrets" -}}
{{- $names := concat ((.Values.global | default dict).imagePullSecrets | default list) .Values.imagePullSecrets }}
{{- $secrets := list }}
{{- range uniq $names }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- end }}
{{- toJson $secrets }}
{{- end }}

{{/*
warmpool-operator.runtimeImage: default image of the runtime pods (the runtime image).
*/}}
{{- define "warmpool-operator.runtimeImage" -}}
{{- include "warmpool-operator.imageRef" (dict "root" . "image" .Values.runtime.image) }}
{{- end }}

{{/*
warmpool-operator.namespaces: the namespaces watched in namespaced mode, as a list
(the release namespace when none is given).
*/}}
{{- define "warmpool-operator.namespaces" -}}
{{- $namespaces := .Values.watch.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/*
warmpool-operator.runtimeSelector: labels of the runtime pods the operator creates
(app.kubernetes.io/name and managed-by as set by warmpool_operator.render).
*/}}
{{- define "warmpool-operator.runtimeSelector" -}}
app.kubernetes.io/name: warmpool-runtime
app.kubernetes.io/managed-by: warmpool-operator
{{- end }}

{{/*
warmpool-operator.poolRules: what the operator does in a watched namespace, verb by verb.
No wildcards, no Secrets (the roles add what module sources and fleets need), no delete but of a
PodDisruptionBudget a pool no longer asks for (children go
with their WarmPool through owner references).
*/}}
{{- define "warmpool-operator.poolRules" -}}
# WarmPools: watched; patched for kopf's bookkeeping annotations; status written.
- apiGroups: ["tensorwasm.dev"]
  resources: ["warmpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tensorwasm.dev"]
  resources: ["warmpools/status"]
  verbs: ["get", "patch"]
# The children of each WarmPool: created, patched back from drift, watched for hand edits.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# A pool's PodDisruptionBudget, deleted when its spec.runtime.podDisruptionBudget is removed.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Runtime pods: read to diagnose a rollout and to find the pods to probe and scrape.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on WarmPools (state transitions and scaling decisions).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
warmpool-operator.crdLabels: labels of the CRDs (no instance or component: they are cluster-wide), and
the base of the test pod's.
*/}}
{{- define "warmpool-operator.crdLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "warmpool-operator.name" . }}
app.kubernetes.io/part-of: warmpool
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
