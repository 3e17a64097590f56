{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "akv-env.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name. */}}
{{- define "akv-env.fullname" -}}
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

{{- define "akv-env.selectorLabels" -}}
app.kubernetes.io/name: {{ include "akv-env.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "akv-env.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "akv-env.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: akv-env
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "akv-env.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "akv-env.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; a digest wins over the tag. */}}
{{- define "akv-env.imageRef" -}}
{{- $image := index . 0 }}
{{- $appVersion := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $appVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "akv-env.webhookImage" -}}
{{- include "akv-env.imageRef" (list .Values.image .Chart.AppVersion) }}
{{- end }}

{{- define "akv-env.injectorImage" -}}
{{- include "akv-env.imageRef" (list .Values.injector.image .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key). */}}
{{- define "akv-env.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode is \"secret\"" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "akv-env.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the API server may use for the Service. */}}
{{- define "akv-env.serviceDnsNames" -}}
{{- $svc := include "akv-env.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Where the webhook mounts the injector in wrapped containers: the guard's "wrapped" test. */}}
{{- define "akv-env.injectorPath" -}}
/akv-env/bin/akv-env
{{- end }}

{{/* The directory the webhook mounts the injector's volume at (read-only) in wrapped containers. */}}
{{- define "akv-env.injectorDir" -}}
/akv-env/bin
{{- end }}

{{/*
The placeholder test, in CEL, for one container expression (the argument, e.g. "c").
It is the grammar's `is_placeholder`: the part of a literal env `value` before the first `?`
ends with "@azurekeyvault". THE ONLY COPY: the webhook's matchConditions and the guard policy
both include it, and tests/chart checks it against `akv_placeholder::is_placeholder`.
*/}}
{{- define "akv-env.cel.hasPlaceholder" -}}
has({{ . }}.env) && {{ . }}.env.exists(e, has(e.value) && e.value.split('?', 2)[0].endsWith('@azurekeyvault'))
{{- end }}

{{/* A container reading a ConfigMap, which may hold a placeholder now or after an edit: the
webhook wraps it so the injector resolves whatever it finds at start. */}}
{{- define "akv-env.cel.readsConfigMap" -}}
(has({{ . }}.envFrom) && {{ . }}.envFrom.exists(f, has(f.configMapRef))) || (has({{ . }}.env) && {{ . }}.env.exists(e, has(e.valueFrom) && has(e.valueFrom.configMapKeyRef)))
{{- end }}

{{/* All containers that the webhook may wrap: containers, init containers (incl. native sidecars). */}}
{{- define "akv-env.cel.containers" -}}
object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : [])
{{- end }}

{{/* The namespace labels the webhook selects on, as `k=v,k2=v2` for messages. */}}
{{- define "akv-env.namespaceLabels" -}}
{{- $pairs := list }}
{{- range $k, $v := (.Values.webhook.namespaceSelector.matchLabels | default dict) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs | default "(see webhook.namespaceSelector)" }}
{{- end }}

{{/* The namespace selector, as JSON: webhook.namespaceSelector plus the namespaces never sent
     (the release's own, whose pods must start without the webhook, and the excluded ones).
     The API server gets it in the MutatingWebhookConfiguration and the webhook the very same
     as --namespace-selector, so both agree on which namespaces are enabled. */}}
{{- define "akv-env.namespaceSelector" -}}
{{- $selector := deepCopy (.Values.webhook.namespaceSelector | default dict) }}
{{- $excluded := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (prepend (.Values.webhook.excludedNamespaces | default list) .Release.Namespace | uniq) }}
{{- $_ := set $selector "matchExpressions" (append ($selector.matchExpressions | default list) $excluded) }}
{{- if not $selector.matchLabels }}
{{- $_ := unset $selector "matchLabels" }}
{{- end }}
{{- toJson $selector }}
{{- end }}
