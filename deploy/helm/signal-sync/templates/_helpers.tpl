{{/*
Names, labels and the worker config. Paths inside the pod are defined once here.
*/}}

{{- define "signal-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signal-sync.fullname" -}}
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

{{- define "signal-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signal-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signal-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "signal-sync.labels" -}}
helm.sh/chart: {{ include "signal-sync.chart" . }}
{{ include "signal-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: signal-sync
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "signal-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "signal-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "signal-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Paths in the pod. */}}
{{- define "signal-sync.configDir" -}}/etc/signal-sync{{- end }}
{{- define "signal-sync.configPath" -}}/etc/signal-sync/config.yaml{{- end }}
{{- define "signal-sync.credentialsDir" -}}/var/run/secrets/signal-sync/credentials{{- end }}
{{- define "signal-sync.kafkaCaDir" -}}/var/run/secrets/signal-sync/kafka-ca{{- end }}
{{- define "signal-sync.kafkaCaPath" -}}/var/run/secrets/signal-sync/kafka-ca/ca.crt{{- end }}
{{- define "signal-sync.stateDir" -}}/var/lib/signal-sync{{- end }}
{{/* The worker pods' controller: a StatefulSet when each pod keeps its state on a claim of its own. */}}
{{- define "signal-sync.workloadKind" -}}{{ if .Values.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}{{- end }}
{{- define "signal-sync.debuggerTokenDir" -}}/var/run/secrets/signal-sync/debugger{{- end }}
{{- define "signal-sync.debuggerTokenPath" -}}/var/run/secrets/signal-sync/debugger/token{{- end }}
{{/* File name of the Kafka SASL password in the credentials dir. */}}
{{- define "signal-sync.kafkaSaslPasswordFile" -}}kafka-sasl-password{{- end }}
{{/* File name of the Kafka OAUTHBEARER client secret in the credentials dir. */}}
{{- define "signal-sync.kafkaOauthClientSecretFile" -}}kafka-oauth-client-secret{{- end }}
{{/* File names of the Schema Registry password and bearer token in the credentials dir. */}}
{{- define "signal-sync.schemaRegistryPasswordFile" -}}schema-registry-password{{- end }}
{{- define "signal-sync.schemaRegistryTokenFile" -}}schema-registry-token{{- end }}
{{- define "signal-sync.schemaRegistryCaDir" -}}/var/run/secrets/signal-sync/schema-registry-ca{{- end }}
{{/* File name of the outcomes' contact_id key in the credentials dir. */}}
{{- define "signal-sync.contactIdKeyFile" -}}outcomes-contact-id-key{{- end }}
{{/* The client certificate, key and key password for mutual TLS, from kafkaTls.clientCertSecret. */}}
{{- define "signal-sync.kafkaClientCertDir" -}}/var/run/secrets/signal-sync/kafka-client{{- end }}

{{- define "signal-sync.appId" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- $kafka.app_id | default "signal-sync" }}
{{- end }}

{{- define "signal-sync.sourceTopic" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- $kafka.source_topic | default "signal.events" }}
{{- end }}

{{/*
The internal topic each integration delivers from, as YAML: topics: [{id, topic}].
Same name as signal_sync.streams.internal.delivery_topic: <app_id>-deliver-<integration id>.
*/}}
{{- define "signal-sync.deliveryTopics" -}}
{{- $appId := include "signal-sync.appId" . }}
{{- $topics := list }}
{{- range .Values.integrations }}
{{- $topics = append $topics (dict "id" .id "topic" (printf "%s-deliver-%s" $appId .id)) }}
{{- end }}
{{- toYaml (dict "topics" $topics) }}
{{- end }}

{{/* Name of the Secret holding the credentials (chart-made or existing). */}}
{{- define "signal-sync.credentialsSecretName" -}}
{{- default (include "signal-sync.fullname" .) .Values.credentials.existingSecret }}
{{- end }}

{{/* Name of the non-sensitive Secret with KEDA's sasl/username/tls parameters. */}}
{{- define "signal-sync.kedaAuthName" -}}
{{- printf "%s-keda" (include "signal-sync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signal-sync.securityProtocol" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- default "PLAINTEXT" $kafka.security_protocol }}
{{- end }}

{{/* "true" when the worker talks SASL to Kafka. */}}
{{- define "signal-sync.kafkaSasl" -}}
{{- if hasPrefix "SASL_" (include "signal-sync.securityProtocol" .) }}true{{- end }}
{{- end }}

{{/* "true" when the worker talks TLS to Kafka. */}}
{{- define "signal-sync.kafkaTls" -}}
{{- if has (include "signal-sync.securityProtocol" .) (list "SSL" "SASL_SSL") }}true{{- end }}
{{- end }}

{{/* "true" when the worker authenticates to Kafka with SASL OAUTHBEARER (OIDC client credentials). */}}
{{- define "signal-sync.kafkaOauth" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- if and (include "signal-sync.kafkaSasl" .) (eq (default "PLAIN" $kafka.sasl_mechanism) "OAUTHBEARER") }}true{{- end }}
{{- end }}

{{/* "true" when the Kafka SASL password is read from the credentials Secret (not a ${VAR}). */}}
{{- define "signal-sync.kafkaSaslPasswordFromSecret" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- if and (include "signal-sync.kafkaSasl" .) (not (include "signal-sync.kafkaOauth" .)) (not $kafka.sasl_password) }}true{{- end }}
{{- end }}

{{/* "true" when the Kafka OAUTHBEARER client secret is read from the credentials Secret (not a ${VAR}). */}}
{{- define "signal-sync.kafkaOauthSecretFromSecret" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- if and (include "signal-sync.kafkaOauth" .) (not $kafka.sasl_oauthbearer_client_secret) }}true{{- end }}
{{- end }}

{{/* config.kafka.schema_registry, as a dict (empty when unset). */}}
{{- define "signal-sync.schemaRegistry" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- toYaml (default (dict) $kafka.schema_registry) }}
{{- end }}

{{/* "true" when the Schema Registry password is read from the credentials Secret (not a ${VAR}). */}}
{{- define "signal-sync.schemaRegistryPasswordFromSecret" -}}
{{- $registry := include "signal-sync.schemaRegistry" . | fromYaml }}
{{- if and $registry.basic_auth_user (not $registry.basic_auth_password) }}true{{- end }}
{{- end }}

{{/* "true" when the Schema Registry bearer token is read from the credentials Secret (not a ${VAR}). */}}
{{- define "signal-sync.schemaRegistryTokenFromSecret" -}}
{{- $registry := include "signal-sync.schemaRegistry" . | fromYaml }}
{{- if and .Values.schemaRegistry.bearerToken (not $registry.bearer_token) }}true{{- end }}
{{- end }}

{{/* "true" when the outcomes' contact_id key is read from the credentials Secret (not a ${VAR}). */}}
{{- define "signal-sync.contactIdKeyFromSecret" -}}
{{- $outcomes := default (dict) .Values.config.outcomes }}
{{- if and .Values.keyedContactId (not $outcomes.contact_id_key) }}true{{- end }}
{{- end }}

{{/* "true" when the pod mounts a client certificate for mutual TLS. */}}
{{- define "signal-sync.kafkaClientCert" -}}
{{- if .Values.kafkaTls.clientCertSecret.name }}true{{- end }}
{{- end }}

{{/* Secret field of an integration: Mailgun api_key; Mautic client_secret (auth type oauth2) or
api_password (flat, or auth type basic). */}}
{{- define "signal-sync.secretField" -}}
{{- if eq .type "mailgun" }}api_key{{- else if and .auth (eq (toString .auth.type) "oauth2") }}client_secret{{- else }}api_password{{- end }}
{{- end }}

{{/*
Integrations whose secret is read from the credentials Secret, as YAML:
  items: [{id, key, field}]   key = the Secret key, field = api_password / api_key / client_secret
The secret field sits in the integration's auth block when it has one.
*/}}
{{- define "signal-sync.secretItems" -}}
{{- $items := list }}
{{- range .Values.integrations }}
{{- $field := include "signal-sync.secretField" . }}
{{- $holder := default . .auth }}
{{- if not (or (get $holder $field) (get $holder (printf "%s_file" $field))) }}
{{- $items = append $items (dict "id" .id "key" (default .id .secretKey) "field" $field) }}
{{- end }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/* "true" when the pod mounts the credentials Secret. */}}
{{- define "signal-sync.mountCredentials" -}}
{{- $items := (include "signal-sync.secretItems" . | fromYaml).items }}
{{- if or $items (include "signal-sync.kafkaSaslPasswordFromSecret" .) (include "signal-sync.kafkaOauthSecretFromSecret" .) (include "signal-sync.schemaRegistryPasswordFromSecret" .) (include "signal-sync.schemaRegistryTokenFromSecret" .) (include "signal-sync.contactIdKeyFromSecret" .) }}true{{- end }}
{{- end }}

{{/* "true" when the chart creates the credentials Secret. */}}
{{- define "signal-sync.createSecret" -}}
{{- if and (not .Values.credentials.existingSecret) (include "signal-sync.mountCredentials" .) }}true{{- end }}
{{- end }}

{{- define "signal-sync.shutdownGrace" -}}
{{- $worker := default (dict) .Values.config.worker }}
{{- if hasKey $worker "shutdown_grace_s" }}{{ $worker.shutdown_grace_s }}{{ else }}25{{ end }}
{{- end }}

{{- define "signal-sync.webPort" -}}
{{- $worker := default (dict) .Values.config.worker }}
{{- default 6066 $worker.web_port | int }}
{{- end }}

{{- define "signal-sync.terminationGracePeriodSeconds" -}}
{{- $grace := include "signal-sync.shutdownGrace" . | float64 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (ceil $grace | int) 15 }}
{{- else }}
{{- if le (.Values.terminationGracePeriodSeconds | float64) $grace }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than config.worker.shutdown_grace_s (%v), or Kubernetes kills the worker before it has committed its offsets" .Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/*
Cross-field checks values.schema.json cannot express. Included by every template that
depends on them, so `helm template` fails with one clear message.
*/}}
{{- define "signal-sync.validate" -}}
{{- $ids := list }}
{{- range .Values.integrations }}
{{- if has .id $ids }}
{{- fail (printf "integrations: duplicate integration id %q" .id) }}
{{- end }}
{{- if has .id (list (include "signal-sync.kafkaSaslPasswordFile" $) (include "signal-sync.kafkaOauthClientSecretFile" $)) }}
{{- fail (printf "integrations: the id %q is reserved for a Kafka secret file" .id) }}
{{- end }}
{{- if has .id (list (include "signal-sync.schemaRegistryPasswordFile" $) (include "signal-sync.schemaRegistryTokenFile" $)) }}
{{- fail (printf "integrations: the id %q is reserved for a Schema Registry secret file" .id) }}
{{- end }}
{{- if eq .id (include "signal-sync.contactIdKeyFile" $) }}
{{- fail (printf "integrations: the id %q is reserved for the outcomes' contact_id key file" .id) }}
{{- end }}
{{- $ids = append $ids .id }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are exclusive: both would drive the worker pods' replicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage)) }}
{{- fail "autoscaling.enabled: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- if and .Values.kafkaTls.caSecret.name (not (include "signal-sync.kafkaTls" .)) }}
{{- fail (printf "kafkaTls.caSecret.name is set but config.kafka.security_protocol is %s; the CA is only used with SSL or SASL_SSL" (include "signal-sync.securityProtocol" .)) }}
{{- end }}
{{- if and (include "signal-sync.kafkaClientCert" .) (not (include "signal-sync.kafkaTls" .)) }}
{{- fail (printf "kafkaTls.clientCertSecret.name is set but config.kafka.security_protocol is %s; a client certificate is only used with SSL or SASL_SSL" (include "signal-sync.securityProtocol" .)) }}
{{- end }}
{{- $kafkaCfg := default (dict) .Values.config.kafka }}
{{- if and $kafkaCfg.ssl_key_password (not (include "signal-sync.kafkaClientCert" .)) }}
{{- fail "config.kafka.ssl_key_password is set but kafkaTls.clientCertSecret.name is not: a key password needs the client certificate" }}
{{- end }}
{{- if and $kafkaCfg.ssl_key_password .Values.kafkaTls.clientCertSecret.passwordKey }}
{{- fail "config.kafka.ssl_key_password and kafkaTls.clientCertSecret.passwordKey both set the key's password; keep one" }}
{{- end }}
{{- $registry := include "signal-sync.schemaRegistry" . | fromYaml }}
{{- if and (not $registry.url) (or $registry.basic_auth_user .Values.schemaRegistry.bearerToken .Values.schemaRegistry.caSecret.name) }}
{{- fail "schemaRegistry / config.kafka.schema_registry: credentials or a CA are set but config.kafka.schema_registry.url is not" }}
{{- end }}
{{- if contains "@" (default "" $registry.url) }}
{{- fail "config.kafka.schema_registry.url: must not carry credentials (user:password@host); use basic_auth_user and credentials.schemaRegistryPassword" }}
{{- end }}
{{- if and $registry.basic_auth_user .Values.schemaRegistry.bearerToken }}
{{- fail "schemaRegistry.bearerToken and config.kafka.schema_registry.basic_auth_user are exclusive: the registry gets one kind of credentials" }}
{{- end }}
{{- if and .Values.schemaRegistry.caSecret.name (not (hasPrefix "https://" (default "" $registry.url))) }}
{{- fail "schemaRegistry.caSecret.name is set but config.kafka.schema_registry.url is not https" }}
{{- end }}
{{- $outcomesCfg := default (dict) .Values.config.outcomes }}
{{- if and .Values.keyedContactId $outcomesCfg.contact_id_key }}
{{- fail "keyedContactId and config.outcomes.contact_id_key both set the contact_id key; keep one" }}
{{- end }}
{{- if not .Values.credentials.existingSecret }}
{{- if and (include "signal-sync.contactIdKeyFromSecret" .) (lt (len .Values.credentials.contactIdKey) 32) }}
{{- fail "credentials.contactIdKey: missing or shorter than 32 characters (the outcomes' contact_id key; or set credentials.existingSecret)" }}
{{- end }}
{{- if and (include "signal-sync.schemaRegistryPasswordFromSecret" .) (not .Values.credentials.schemaRegistryPassword) }}
{{- fail "credentials.schemaRegistryPassword: missing the Schema Registry password (or set credentials.existingSecret)" }}
{{- end }}
{{- if and (include "signal-sync.schemaRegistryTokenFromSecret" .) (not .Values.credentials.schemaRegistryToken) }}
{{- fail "credentials.schemaRegistryToken: missing the Schema Registry bearer token (or set credentials.existingSecret)" }}
{{- end }}
{{- range (include "signal-sync.secretItems" . | fromYaml).items }}
{{- if not (get $.Values.credentials.integrations .id) }}
{{- fail (printf "credentials.integrations.%s: missing the %s of integration %q (or set credentials.existingSecret, or %s: \"${VAR}\" with extraEnv)" .id .field .id .field) }}
{{- end }}
{{- end }}
{{- if and (include "signal-sync.kafkaSaslPasswordFromSecret" .) (not .Values.credentials.kafkaSaslPassword) }}
{{- fail "credentials.kafkaSaslPassword: missing the Kafka SASL password (or set credentials.existingSecret)" }}
{{- end }}
{{- if and (include "signal-sync.kafkaOauthSecretFromSecret" .) (not .Values.credentials.kafkaOauthClientSecret) }}
{{- fail "credentials.kafkaOauthClientSecret: missing the Kafka OAUTHBEARER client secret (or set credentials.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and .Values.debugger.tokenSecret.name (not .Values.debugger.enabled) }}
{{- fail "debugger.tokenSecret.name is set but debugger.enabled is false; enable the debugger or remove the token Secret" }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- if contains "${" (include "signal-sync.kedaBootstrapServers" .) }}
{{- fail "keda.bootstrapServers: KEDA cannot resolve ${VAR} in config.kafka.bootstrap_servers; set keda.bootstrapServers" }}
{{- end }}
{{- if include "signal-sync.kafkaOauth" . }}
{{- range list "sasl_oauthbearer_client_id" "sasl_oauthbearer_token_endpoint_url" "sasl_oauthbearer_scope" }}
{{- if contains "${" (default "" (get $kafka .)) }}
{{- fail (printf "keda.enabled: KEDA cannot resolve ${VAR} in config.kafka.%s; give it literally" .) }}
{{- end }}
{{- end }}
{{- if not (include "signal-sync.kafkaOauthSecretFromSecret" .) }}
{{- fail "keda.enabled: KEDA reads the Kafka OAUTHBEARER client secret from the credentials Secret; remove config.kafka.sasl_oauthbearer_client_secret" }}
{{- end }}
{{- else if include "signal-sync.kafkaSasl" . }}
{{- if contains "${" (default "" $kafka.sasl_username) }}
{{- fail "keda.enabled: KEDA cannot resolve ${VAR} in config.kafka.sasl_username; give the user name literally" }}
{{- end }}
{{- if not (include "signal-sync.kafkaSaslPasswordFromSecret" .) }}
{{- fail "keda.enabled: KEDA reads the Kafka SASL password from the credentials Secret; remove config.kafka.sasl_password" }}
{{- end }}
{{- end }}
{{- if $kafka.ssl_key_password }}
{{- fail "keda.enabled: KEDA reads the client key's password from kafkaTls.clientCertSecret.passwordKey; remove config.kafka.ssl_key_password" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The worker container's env, volume mounts and the pod's volumes: shared by the Deployment and
the `helm test` pod, which must see the same config, secrets and CA.
*/}}
{{- define "signal-sync.env" -}}
# Read-only root filesystem: anything that wants a home writes under /tmp.
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- if .Values.persistence.enabled }}
# Static group membership: a StatefulSet pod keeps its name, so a restarted pod gets its
# partitions (and its kept state) back without a rebalance of the group. The namespace in the
# name keeps releases of one name in two namespaces of a cluster apart.
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SIGNAL_SYNC_KAFKA__GROUP_INSTANCE_ID
  value: "$(POD_NAMESPACE).$(POD_NAME)"
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "signal-sync.volumeMounts" -}}
- name: config
  mountPath: {{ include "signal-sync.configDir" . }}
  readOnly: true
{{- if include "signal-sync.mountCredentials" . }}
- name: credentials
  mountPath: {{ include "signal-sync.credentialsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.kafkaTls.caSecret.name }}
- name: kafka-ca
  mountPath: {{ include "signal-sync.kafkaCaDir" . }}
  readOnly: true
{{- end }}
{{- if include "signal-sync.kafkaClientCert" . }}
- name: kafka-client
  mountPath: {{ include "signal-sync.kafkaClientCertDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.schemaRegistry.caSecret.name }}
- name: schema-registry-ca
  mountPath: {{ include "signal-sync.schemaRegistryCaDir" . }}
  readOnly: true
{{- end }}
{{- if include "signal-sync.debuggerToken" . }}
- name: debugger-token
  mountPath: {{ include "signal-sync.debuggerTokenDir" . }}
  readOnly: true
{{- end }}
- name: state
  mountPath: {{ include "signal-sync.stateDir" . }}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The state folder as an emptyDir: the worker pods' without persistence, the test pod's always. */}}
{{- define "signal-sync.stateEmptyDir" -}}
- name: state
  emptyDir: {{ with .Values.stateDirSizeLimit }}{ sizeLimit: {{ . }} }{{ else }}{}{{ end }}
{{- end }}

{{- define "signal-sync.volumes" -}}
{{- $secretItems := (include "signal-sync.secretItems" . | fromYaml).items -}}
- name: config
  configMap:
    name: {{ include "signal-sync.fullname" . }}
{{- if include "signal-sync.mountCredentials" . }}
- name: credentials
  secret:
    secretName: {{ include "signal-sync.credentialsSecretName" . }}
    defaultMode: 0440
    # Only the keys the worker reads, each under the file name the config points at.
    items:
      {{- range $secretItems }}
      - key: {{ .key }}
        path: {{ .id }}
      {{- end }}
      {{- if include "signal-sync.kafkaSaslPasswordFromSecret" . }}
      - key: {{ .Values.credentials.kafkaSaslPasswordKey }}
        path: {{ include "signal-sync.kafkaSaslPasswordFile" . }}
      {{- end }}
      {{- if include "signal-sync.kafkaOauthSecretFromSecret" . }}
      - key: {{ .Values.credentials.kafkaOauthClientSecretKey }}
        path: {{ include "signal-sync.kafkaOauthClientSecretFile" . }}
      {{- end }}
      {{- if include "signal-sync.schemaRegistryPasswordFromSecret" . }}
      - key: {{ .Values.credentials.schemaRegistryPasswordKey }}
        path: {{ include "signal-sync.schemaRegistryPasswordFile" . }}
      {{- end }}
      {{- if include "signal-sync.schemaRegistryTokenFromSecret" . }}
      - key: {{ .Values.credentials.schemaRegistryTokenKey }}
        path: {{ include "signal-sync.schemaRegistryTokenFile" . }}
      {{- end }}
      {{- if include "signal-sync.contactIdKeyFromSecret" . }}
      - key: {{ .Values.credentials.contactIdKeyKey }}
        path: {{ include "signal-sync.contactIdKeyFile" . }}
      {{- end }}
{{- end }}
{{- if .Values.kafkaTls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafkaTls.caSecret.name }}
    defaultMode: 0444
    items:
      - key: {{ .Values.kafkaTls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if include "signal-sync.kafkaClientCert" . }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafkaTls.clientCertSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafkaTls.clientCertSecret.certKey }}
        path: tls.crt
      - key: {{ .Values.kafkaTls.clientCertSecret.keyKey }}
        path: tls.key
      {{- with .Values.kafkaTls.clientCertSecret.passwordKey }}
      - key: {{ . }}
        path: key-password
      {{- end }}
{{- end }}
{{- if .Values.schemaRegistry.caSecret.name }}
- name: schema-registry-ca
  secret:
    secretName: {{ .Values.schemaRegistry.caSecret.name }}
    defaultMode: 0444
    items:
      - key: {{ .Values.schemaRegistry.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if include "signal-sync.debuggerToken" . }}
- name: debugger-token
  secret:
    secretName: {{ .Values.debugger.tokenSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.debugger.tokenSecret.key }}
        path: token
{{- end }}
- name: tmp
  emptyDir: {{ with .Values.tmpDirSizeLimit }}{ sizeLimit: {{ . }} }{{ else }}{}{{ end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* "true" when the debugger is on and reads its bearer token from a Secret. */}}
{{- define "signal-sync.debuggerToken" -}}
{{- if and .Values.debugger.enabled .Values.debugger.tokenSecret.name }}true{{- end }}
{{- end }}

{{- define "signal-sync.kedaBootstrapServers" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- default $kafka.bootstrap_servers .Values.keda.bootstrapServers }}
{{- end }}

{{/*
Metadata of one KEDA kafka trigger: the worker's group (the Faust app id) on one topic.
Argument: dict root, topic, lag, activation.
*/}}
{{- define "signal-sync.kedaTriggerMetadata" -}}
{{- $root := .root -}}
bootstrapServers: {{ include "signal-sync.kedaBootstrapServers" $root | quote }}
consumerGroup: {{ include "signal-sync.appId" $root | quote }}
topic: {{ .topic | quote }}
lagThreshold: {{ .lag | toString | quote }}
activationLagThreshold: {{ .activation | toString | quote }}
offsetResetPolicy: {{ $root.Values.keda.offsetResetPolicy | quote }}
# Never more consumers than partitions: a pod beyond them idles.
allowIdleConsumers: "false"
{{- end }}

{{/* KEDA's name of the SASL mechanism. */}}
{{- define "signal-sync.kedaSasl" -}}
{{- $kafka := default (dict) .Values.config.kafka }}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" "OAUTHBEARER" "oauthbearer") (default "PLAIN" $kafka.sasl_mechanism) }}
{{- end }}

{{/*
The worker's config file: values.config + values.integrations, plus the chart-managed
fields (bind address, state dir, secret and CA file paths, the debugger section from
values.debugger). Never contains a secret:
secrets are files from the credentials Secret or ${VAR} references.
*/}}
{{- define "signal-sync.workerConfig" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) }}
{{- $kafka := default (dict) (get $cfg "kafka") }}
{{- if include "signal-sync.kafkaSaslPasswordFromSecret" . }}
{{- $_ := set $kafka "sasl_password_file" (printf "%s/%s" (include "signal-sync.credentialsDir" .) (include "signal-sync.kafkaSaslPasswordFile" .)) }}
{{- end }}
{{- if include "signal-sync.kafkaOauthSecretFromSecret" . }}
{{- $_ := set $kafka "sasl_oauthbearer_client_secret_file" (printf "%s/%s" (include "signal-sync.credentialsDir" .) (include "signal-sync.kafkaOauthClientSecretFile" .)) }}
{{- end }}
{{- if .Values.kafkaTls.caSecret.name }}
{{- $_ := set $kafka "ssl_ca_file" (include "signal-sync.kafkaCaPath" .) }}
{{- end }}
{{- if include "signal-sync.kafkaClientCert" . }}
{{- $dir := include "signal-sync.kafkaClientCertDir" . }}
{{- $_ := set $kafka "ssl_certificate_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $kafka "ssl_key_file" (printf "%s/tls.key" $dir) }}
{{- if .Values.kafkaTls.clientCertSecret.passwordKey }}
{{- $_ := set $kafka "ssl_key_password_file" (printf "%s/key-password" $dir) }}
{{- end }}
{{- end }}
{{- $registry := include "signal-sync.schemaRegistry" . | fromYaml }}
{{- if $registry.url }}
{{- if include "signal-sync.schemaRegistryPasswordFromSecret" . }}
{{- $_ := set $registry "basic_auth_password_file" (printf "%s/%s" (include "signal-sync.credentialsDir" .) (include "signal-sync.schemaRegistryPasswordFile" .)) }}
{{- end }}
{{- if include "signal-sync.schemaRegistryTokenFromSecret" . }}
{{- $_ := set $registry "bearer_token_file" (printf "%s/%s" (include "signal-sync.credentialsDir" .) (include "signal-sync.schemaRegistryTokenFile" .)) }}
{{- end }}
{{- if .Values.schemaRegistry.caSecret.name }}
{{- $_ := set $registry "ssl_ca_file" (printf "%s/ca.crt" (include "signal-sync.schemaRegistryCaDir" .)) }}
{{- end }}
{{- $_ := set $kafka "schema_registry" $registry }}
{{- end }}
{{- $_ := set $cfg "kafka" $kafka }}
{{- if include "signal-sync.contactIdKeyFromSecret" . }}
{{- $outcomes := default (dict) (get $cfg "outcomes") }}
{{- $_ := set $outcomes "contact_id_key_file" (printf "%s/%s" (include "signal-sync.credentialsDir" .) (include "signal-sync.contactIdKeyFile" .)) }}
{{- $_ := set $cfg "outcomes" $outcomes }}
{{- end }}
{{- $worker := default (dict) (get $cfg "worker") }}
{{- $_ := set $worker "web_bind" "0.0.0.0" }}
{{- $_ := set $worker "state_dir" (include "signal-sync.stateDir" .) }}
{{- $_ := set $cfg "worker" $worker }}
{{- $debugger := dict "enabled" .Values.debugger.enabled "show_personal_data" .Values.debugger.show_personal_data }}
{{- if include "signal-sync.debuggerToken" . }}
{{- $_ := set $debugger "token_file" (include "signal-sync.debuggerTokenPath" .) }}
{{- end }}
{{- $_ := set $cfg "debugger" $debugger }}
{{- $fromSecret := dict }}
{{- range (include "signal-sync.secretItems" . | fromYaml).items }}
{{- $_ := set $fromSecret .id .field }}
{{- end }}
{{- $integrations := list }}
{{- range .Values.integrations }}
{{- $integration := omit (deepCopy .) "secretKey" }}
{{- if hasKey $fromSecret .id }}
{{- $holder := default $integration $integration.auth }}
{{- $_ := set $holder (printf "%s_file" (get $fromSecret .id)) (printf "%s/%s" (include "signal-sync.credentialsDir" $) .id) }}
{{- end }}
{{- $integrations = append $integrations $integration }}
{{- end }}
{{- $_ := set $cfg "integrations" $integrations }}
{{- toYaml $cfg }}
{{- end }}
