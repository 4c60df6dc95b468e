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
The database Secrets: one per component ("owner" for the migrations, "api", "operator",
"runner"), each holding a libpq URL. Called with (list $ "<component>").
- bundled PostgreSQL: the chart makes `<fullname>-database` (the owner's URL) and
  `<fullname>-database-<component>`, each component logging in with its own role;
- database.url: one URL for everything (the development shape), in `<fullname>-database`;
- database.existingSecret: `database.<component>.existingSecret`, else the owner's Secret.
*/}}
{{- define "longtask.databaseSecretCreated" -}}
{{- if or .Values.postgresql.enabled .Values.database.url -}}true{{- end -}}
{{- end -}}
{{- define "longtask.databaseSecretName" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- if $root.Values.postgresql.enabled -}}
{{- include "longtask.componentName" (list $root (ternary "database" (printf "database-%s" $component) (eq $component "owner"))) -}}
{{- else if $root.Values.database.url -}}
{{- include "longtask.componentName" (list $root "database") -}}
{{- else if and (ne $component "owner") (index $root.Values.database $component).existingSecret -}}
{{- (index $root.Values.database $component).existingSecret -}}
{{- else -}}
{{- $root.Values.database.existingSecret -}}
{{- end -}}
{{- end -}}
{{- define "longtask.databaseSecretKey" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- if include "longtask.databaseSecretCreated" $root -}}url
{{- else if and (ne $component "owner") (index $root.Values.database $component).existingSecret -}}
{{- (index $root.Values.database $component).existingSecretKey -}}
{{- else -}}
{{- $root.Values.database.existingSecretKey -}}
{{- end -}}
{{- end -}}

{{/*
The bundled PostgreSQL's login roles: (list $ "<component>") -> its role name. The owner
is postgresql.username; the others are `<username>_<component>_user`, members of the group
roles of migration 0003 (longtask/db/roles.py), which the bootstrap script makes.
*/}}
{{- define "longtask.postgresqlRole" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- if eq $component "owner" -}}{{ $root.Values.postgresql.username }}{{- else -}}{{ printf "%s_%s_user" $root.Values.postgresql.username $component }}{{- end -}}
{{- end -}}

{{/*
A password of the bundled PostgreSQL: (list $ "<key>"), key one of password (the owner's,
or postgresql.password when given), superuser-password, api-password, operator-password,
runner-password. The one stored at install (upgrades keep it), else a new random one;
remembered for the rest of the render so every template sees the same.
*/}}
{{- define "longtask.postgresqlSecretValue" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $memo := $root.Values.postgresql -}}
{{- if and (eq $key "password") $memo.password -}}
{{- $memo.password -}}
{{- else -}}
{{- $cache := default (dict) (get $memo "_generated") -}}
{{- if not (hasKey $cache $key) -}}
{{- $secret := lookup "v1" "Secret" $root.Release.Namespace (include "longtask.componentName" (list $root "postgresql")) -}}
{{- if and $secret $secret.data (index $secret.data $key) -}}
{{- $_ := set $cache $key (index $secret.data $key | b64dec) -}}
{{- else -}}
{{- $_ := set $cache $key (randAlphaNum 32) -}}
{{- end -}}
{{- $_ := set $memo "_generated" $cache -}}
{{- end -}}
{{- index $cache $key -}}
{{- end -}}
{{- end -}}
{{- define "longtask.postgresqlPassword" -}}
{{- include "longtask.postgresqlSecretValue" (list . "password") -}}
{{- end -}}

{{/* The database URL of (list $ "<component>") when the chart makes the Secret. */}}
{{- define "longtask.databaseUrl" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- if $root.Values.postgresql.enabled -}}
{{- $pg := $root.Values.postgresql -}}
{{- $host := printf "%s.%s.svc" (include "longtask.componentName" (list $root "postgresql")) $root.Release.Namespace -}}
{{- $password := include "longtask.postgresqlSecretValue" (list $root (ternary "password" (printf "%s-password" $component) (eq $component "owner"))) -}}
{{- printf "postgresql://%s:%s@%s:5432/%s" (include "longtask.postgresqlRole" (list $root $component)) ($password | urlquery) $host $pg.database -}}
{{- else -}}
{{- $root.Values.database.url -}}
{{- end -}}
{{- end -}}

{{/* A checksum of every URL the chart makes: a new password restarts the pods. */}}
{{- define "longtask.databaseChecksum" -}}
{{- $root := . -}}
{{- $urls := list -}}
{{- range $c := list "owner" "api" "operator" "runner" -}}
{{- $urls = append $urls (include "longtask.databaseUrl" (list $root $c)) -}}
{{- end -}}
{{- join "\n" $urls | sha256sum | trunc 16 -}}
{{- end -}}

{{/* The env entry that hands (list $ "<component>")'s database URL to a container. */}}
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
