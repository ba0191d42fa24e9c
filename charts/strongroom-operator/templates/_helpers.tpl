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
What the operator may do to PiiVaults and their children. Secrets: no list or watch, so
the operator never holds every Secret of a namespace in memory; it reads the ones it knows.
*/}}
{{- define "strongroom-operator.rules" -}}
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["strongroom.dev"]
  resources: ["piivaults/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["deletecollection"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
