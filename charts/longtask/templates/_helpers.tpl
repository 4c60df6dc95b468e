{{/*
Names, labels and the small decisions several templates share.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "longtask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart> (or just the release when it already holds the chart name), 63 max. */}}
{{- define "longtask.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "longtask.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: `<fullname>-<component>`, kept within 63 characters. */}}
{{- define "longtask.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "longtask.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "longtask.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "longtask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (list $ "operator"). */}}
{{- define "longtask.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "longtask.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component's objects: (list $ "operator"). */}}
{{- define "longtask.componentLabels" -}}
{{ include "longtask.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* An image reference from {repository, tag, digest}: (list $ .Values.image). */}}
{{- define "longtask.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount names. The runner's has the same name in every task namespace. */}}
{{- define "longtask.operatorServiceAccount" -}}{{ include "longtask.componentName" (list . "operator") }}{{- end -}}
{{- define "longtask.apiServiceAccount" -}}{{ include "longtask.componentName" (list . "api") }}{{- end -}}
{{- define "longtask.runnerServiceAccount" -}}{{ include "longtask.componentName" (list . "runner") }}{{- end -}}

{{/* The namespace the API serves. */}}
{{- define "longtask.apiNamespace" -}}
{{- default .Release.Namespace .Values.api.namespace -}}
{{- end -}}

{{/*
Namespaces where tasks run: the release namespace, then watch.namespaces, without repeats.
Returned as a comma-separated string (templates split it).
*/}}
{{- define "longtask.taskNamespaces" -}}
{{- $all := list .Release.Namespace -}}
{{- range .Values.watch.namespaces -}}
{{- if not (has . $all) -}}{{- $all = append $all . -}}{{- end -}}
{{- end -}}
{{- join "," $all -}}
{{- end -}}

{{/* The operator's leader-election Lease: its name. */}}
{{- define "longtask.leaseName" -}}
{{- default (include "longtask.componentName" (list . "operator")) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{/*
The database Secret: its name and key, and whether the chart makes it.
The chart makes it for the bundled PostgreSQL and for database.url; otherwise it is
database.existingSecret.
*/}}
{{- define "longtask.databaseSecretCreated" -}}
{{- if or .Values.postgresql.enabled .Values.database.url -}}true{{- end -}}
{{- end -}}
{{- define "longtask.databaseSecretName" -}}
{{- if include "longtask.databaseSecretCreated" . -}}
{{- include "longtask.componentName" (list . "database") -}}
{{- else -}}
{{- .Values.database.existingSecret -}}
{{- end -}}
{{- end -}}
{{- define "longtask.databaseSecretKey" -}}
{{- if include "longtask.databaseSecretCreated" . -}}url{{- else -}}{{ .Values.database.existingSecretKey }}{{- end -}}
{{- end -}}

{{/*
The bundled PostgreSQL's password: given, else the one stored at install (upgrades keep it),
else a new random one. Stored back into .Values so that every template of one render (the
PostgreSQL Secret and the URL in the database Secret) sees the same password.
*/}}
{{- define "longtask.postgresqlPassword" -}}
{{- if not .Values.postgresql.password -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "longtask.componentName" (list . "postgresql")) -}}
{{- if and $secret $secret.data (index $secret.data "password") -}}
{{- $_ := set .Values.postgresql "password" (index $secret.data "password" | b64dec) -}}
{{- else -}}
{{- $_ := set .Values.postgresql "password" (randAlphaNum 32) -}}
{{- end -}}
{{- end -}}
{{- .Values.postgresql.password -}}
{{- end -}}

{{/* The database URL when the chart makes the Secret. */}}
{{- define "longtask.databaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- $pg := .Values.postgresql -}}
{{- $host := printf "%s.%s.svc" (include "longtask.componentName" (list . "postgresql")) .Release.Namespace -}}
{{- printf "postgresql://%s:%s@%s:5432/%s" $pg.username (include "longtask.postgresqlPassword" . | urlquery) $host $pg.database -}}
{{- else -}}
{{- .Values.database.url -}}
{{- end -}}
{{- end -}}

{{/* The env entry that hands the database URL to a container. */}}
{{- define "longtask.databaseEnv" -}}
- name: LONGTASK_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "longtask.databaseSecretName" . }}
      key: {{ include "longtask.databaseSecretKey" . }}
{{- end -}}

{{/* The security context every container of the chart runs with. */}}
{{- define "longtask.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The pod security context of the operator, API and test pods (the image's user). */}}
{{- define "longtask.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Checks that values can't express in the schema alone. */}}
{{- define "longtask.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.database.existingSecret) (not .Values.database.url) -}}
{{- fail "database: set postgresql.enabled=true (bundled, not for production), database.existingSecret or database.url" -}}
{{- end -}}
{{- if and .Values.postgresql.enabled (or .Values.database.existingSecret .Values.database.url) -}}
{{- fail "database: postgresql.enabled=true and database.existingSecret/url exclude each other; choose one" -}}
{{- end -}}
{{- if and .Values.database.existingSecret .Values.database.url -}}
{{- fail "database: database.existingSecret and database.url exclude each other; choose one" -}}
{{- end -}}
{{- if and .Values.api.enabled (not (has (include "longtask.apiNamespace" .) (splitList "," (include "longtask.taskNamespaces" .)))) -}}
{{- fail (printf "api.namespace %q must be the release namespace or one of watch.namespaces" .Values.api.namespace) -}}
{{- end -}}
{{- end -}}
