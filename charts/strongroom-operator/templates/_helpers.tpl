{{- define "strongroom-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "strongroom-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strongroom-operator.labels" -}}
{{ include "strongroom-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "strongroom-operator.serviceAccountName" -}}
{{- default (include "strongroom-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
The namespaces a namespaced install watches (comma-separated): the release namespace and
watchNamespaces, each once. Empty with clusterWide: every namespace.
*/}}
{{- define "strongroom-operator.watchedNamespaces" -}}
{{- if .Values.clusterWide -}}
{{- if .Values.watchNamespaces -}}
{{- fail "clusterWide watches every namespace: leave watchNamespaces empty" -}}
{{- end -}}
{{- else -}}
{{- prepend .Values.watchNamespaces .Release.Namespace | uniq | join "," -}}
{{- end -}}
{{- end -}}

{{/*
What the operator may do to its resources and their children. Its resources: patch only (a
finalizer is a JSON patch, a status a server-side apply to the status subresource), no
update; their finalizers' update lets children block their owner's deletion. Jobs: a
PiiVaultBackup's and a restore's, created and watched, never deleted (owner references do
that); Pods: listed, for a finished Job's termination messages.
Secrets: no list or watch, so the operator never holds every Secret of a namespace in
memory; it reads the ones it knows. PersistentVolumeClaims: deletecollection, for the data
volumes of a deleted SoftHSM vault; get and create, for the first volume of a vault restored
from a backup (made before its StatefulSet). Prometheus Operator objects (spec.monitoring):
looked up, applied and deleted by name, never listed or watched (granted whether or not
that API is installed). These rules are granted in each watched
namespace (a Role), or — only with clusterWide — in every namespace (a ClusterRole).
*/}}
{{- define "strongroom-operator.rules" -}}
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults", "retentionpolicies", "piivaultbackups"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults/status", "retentionpolicies/status", "piivaultbackups/status"]
  verbs: ["get", "patch"]
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults/finalizers", "retentionpolicies/finalizers", "piivaultbackups/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create", "deletecollection"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors", "servicemonitors", "prometheusrules"]
  verbs: ["get", "create", "patch", "delete"]
{{- end -}}
