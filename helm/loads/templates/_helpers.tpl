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

{{/* The namespace of every object: namespaceOverride, else the release's. */}}
{{- define "loads.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
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
An image reference: [registry/]repository/name:tag, or [registry/]repository/name@digest when
image.digests has one; call with (dict "ctx" $ "image" "worker"): a key of image.names. The three
images share the tag, because the controller, the workers and the runner speak one protocol
version. global.imageRegistry (an umbrella chart's) replaces image.registry.
*/}}
{{- define "loads.image" -}}
{{- $image := .ctx.Values.image }}
{{- $repository := required "image.repository is required: the path in front of the image names (for example localhost, or an organisation in a registry)" $image.repository }}
{{- $name := get $image.names .image }}
{{- $registry := get (.ctx.Values.global | default dict) "imageRegistry" | default $image.registry }}
{{- $path := $name }}
{{- if $registry }}
{{- $path = printf "%s/%s/%s" $registry $repository $name }}
{{- else }}
{{- $path = printf "%s/%s" $repository $name }}
{{- end }}
{{- with get $image.digests .image }}
{{- printf "%s@%s" $path . }}
{{- else }}
{{- printf "%s:%s" $path ($image.tag | default .ctx.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The names of the image pull Secrets, space-separated: global.imagePullSecrets (names or
{name: NAME}) then imagePullSecrets, each once.
*/}}
{{- define "loads.imagePullSecretNames" -}}
{{- $names := list }}
{{- range get (.Values.global | default dict) "imagePullSecrets" | default list }}
{{- if kindIs "string" . }}
{{- $names = append $names . }}
{{- else }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- $names | uniq | join " " }}
{{- end }}

{{/* A pod spec's imagePullSecrets, or nothing without any. */}}
{{- define "loads.imagePullSecrets" -}}
{{- with include "loads.imagePullSecretNames" . }}
imagePullSecrets:
{{- range splitList " " . }}
  - name: {{ . }}
{{- end }}
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
The tokens, once per render, kept in .Values, which every template of the render shares:
randAlphaNum gives new values on each call, and without this the checksum/secret annotation
(which renders the Secret template again) would hash other tokens than the Secret holds. The
metrics token only when the chart generates it (loads.metricsTokenGenerated), under the key
controller.metricsToken.key; "" otherwise.

A token the Secret already holds in the cluster (an upgrade) is kept: `lookup` finds it. Upgrades
then render the same Secret, and the same checksum, so that pods keep running. `helm template`
and client-side dry runs have no cluster: lookup finds nothing there, and the tokens are new on
each render (hence auth.generate=false with auth.existingSecret for GitOps). Outputs nothing.
*/}}
{{- define "loads.generateTokens" -}}
{{- if not (hasKey .Values "loadsGeneratedTokens") }}
{{- $secret := lookup "v1" "Secret" (include "loads.namespace" .) (include "loads.tokensSecretName" .) | default dict }}
{{- $data := get $secret "data" | default dict }}
{{- $api := get $data "api-token" | toString | b64dec | default (randAlphaNum 32) }}
{{- $worker := get $data "worker-token" | toString | b64dec | default (randAlphaNum 32) }}
{{- $metrics := "" }}
{{- if include "loads.metricsTokenGenerated" . }}
{{- $metrics = get $data .Values.controller.metricsToken.key | toString | b64dec | default (randAlphaNum 32) }}
{{- end }}
{{- $_ := set .Values "loadsGeneratedTokens" (dict "api" $api "worker" $worker "metrics" $metrics) }}
{{- end }}
{{- end }}

{{/*
The metrics token: /metrics of the controller and of the workers (standing and launched) answers
only "Authorization: Bearer TOKEN" (--metrics-token-file; both binaries refuse --metrics beyond
loopback without it), and the ServiceMonitor and PodMonitor send it. It is the key
controller.metricsToken.key (metrics-token) of the Secret controller.metricsToken.secretName,
else of the tokens Secret: <fullname>-tokens, where the chart generates it, or auth.existingSecret,
which must then hold it.
*/}}
{{- define "loads.metricsTokenSecretName" -}}
{{- .Values.controller.metricsToken.secretName | default (include "loads.tokensSecretName" .) }}
{{- end }}

{{/* "true" when the chart generates the metrics token into <fullname>-tokens, else "". */}}
{{- define "loads.metricsTokenGenerated" -}}
{{- if and (not .Values.auth.existingSecret) (eq (include "loads.metricsTokenSecretName" .) (include "loads.tokensSecretName" .)) }}
{{- print "true" }}
{{- end }}
{{- end }}

{{/*
The Secret a ServiceMonitor or PodMonitor in the namespace `namespace` reads the metrics token
from (the Prometheus Operator reads it in the monitor's own namespace); call with (dict "ctx" $
"namespace" NS). A generated token is copied into <fullname>-metrics-token of each monitor's
namespace other than the release's (metrics-token-secret.yaml); a Secret of yours must be created
there too, under the same name.
*/}}
{{- define "loads.monitorTokenSecretName" -}}
{{- if and (include "loads.metricsTokenGenerated" .ctx) (ne .namespace (include "loads.namespace" .ctx)) }}
{{- include "loads.componentName" (dict "ctx" .ctx "suffix" "metrics-token") }}
{{- else }}
{{- include "loads.metricsTokenSecretName" .ctx }}
{{- end }}
{{- end }}

{{/*
Fails on a metrics token that cannot work: the key of the API or the worker token (Prometheus
would hold the right to start runs, or to join as a worker), or a Secret of yours found in the
cluster (an upgrade; `helm template` finds none) without the key, where the pods of the
controller and the workers would wait in ContainerCreating. Outputs nothing.
*/}}
{{- define "loads.checkMetricsToken" -}}
{{- $token := .Values.controller.metricsToken }}
{{- if has $token.key (list "api-token" "worker-token") }}
{{- fail (printf "controller.metricsToken.key is %q: the metrics token must be a token of its own, not the %s (whoever scrapes /metrics would hold it); keep metrics-token or name another key" $token.key (ternary "API token" "worker token" (eq $token.key "api-token"))) }}
{{- end }}
{{- if not (include "loads.metricsTokenGenerated" .) }}
{{- $name := include "loads.metricsTokenSecretName" . }}
{{- $secret := lookup "v1" "Secret" (include "loads.namespace" .) $name | default dict }}
{{- if and $secret (not (hasKey (get $secret "data" | default dict) $token.key)) }}
{{- fail (printf "the Secret %s (%s) has no key %s: /metrics of the controller and of the workers asks for that token (--metrics-token-file), and their pods (launched workers too) would wait for it in ContainerCreating; add it to the Secret (one line, for example from openssl rand -hex 24), or name a Secret that holds it in controller.metricsToken.secretName (and its key in controller.metricsToken.key)" $name (ternary "controller.metricsToken.secretName" "auth.existingSecret" (ne $token.secretName "")) $token.key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
checksum/secret for pod annotations, so that pods restart when the generated tokens change (when
the Secret was not found: see README.md). Nothing with auth.existingSecret, whose content the
chart does not know.
*/}}
{{- define "loads.secretChecksum" -}}
{{- if not .Values.auth.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/tokens-secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Security contexts of every pod and container, from podSecurityContext and
containerSecurityContext. The defaults: the images run as uid/gid 10001, and nothing needs root,
a writable root filesystem or any capability (the only writes go to the /tmp emptyDir).
*/}}
{{- define "loads.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "loads.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
The worker pod both kinds of workers run from, as YAML of a pod spec whose one container is
"worker": the standing workers' Deployment and the pods the launcher creates
(loads.workerPodTemplate) both build on it, so that they serve /metrics alike (with the metrics
token, which the PodMonitor sends to both), are probed alike and run under the same contexts.
Call with (dict "ctx" $ "launched" BOOL). Launched pods take launcher.podSecurityContext,
launcher.containerSecurityContext and launcher.extraEnv where the standing ones take the chart's
contexts and worker.extraEnv. Both read it with fromYaml: its comments stay here.

Not here, each kind's own: the worker's --controller, --id, --token-file, --work-dir, --threads
and CURVE key, its image, resources, /tmp and token volumes (the launcher sets its own over the
template, and refuses one that sets these flags, the image or these volumes:
controller/src/kubernetes_launcher.cc, CheckPodTemplate), labels, annotations and placement.
*/}}
{{- define "loads.workerPod" -}}
{{- $values := .ctx.Values }}
{{- $worker := $values.worker }}
{{- $podContext := $values.podSecurityContext }}
{{- $containerContext := $values.containerSecurityContext }}
{{- $env := $worker.extraEnv }}
{{- if .launched }}
{{- $podContext = $values.launcher.podSecurityContext | default $podContext }}
{{- $containerContext = $values.launcher.containerSecurityContext | default $containerContext }}
{{- $env = $values.launcher.extraEnv }}
{{- end }}
# Workers run the tests users ship; they get no Kubernetes API credentials.
automountServiceAccountToken: false
# A worker in a run needs up to its --shutdown-timeout (20 s) to leave cleanly.
terminationGracePeriodSeconds: {{ $worker.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $podContext | nindent 2 }}
containers:
  - name: worker
    args:
      # /metrics answers only "Authorization: Bearer TOKEN" (the PodMonitor sends it); the
      # worker refuses --metrics beyond loopback without it.
      - --metrics
      - 0.0.0.0:9465
      - --metrics-token-file
      - /var/run/loads-metrics/token
      - --controller-timeout
      - {{ $worker.controllerTimeout | quote }}
    {{- with $env }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: 9465
        protocol: TCP
    # A worker serves nothing but its metrics: that is what shows it is alive. A TCP probe:
    # /metrics asks for the token, which an HTTP probe could only carry in the pod spec.
    livenessProbe:
      tcpSocket:
        port: metrics
      initialDelaySeconds: 5
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 3
    securityContext:
      {{- toYaml $containerContext | nindent 6 }}
    volumeMounts:
      - name: metrics-token
        mountPath: /var/run/loads-metrics
        readOnly: true
volumes:
  # The metrics token only, for --metrics-token-file: the controller's (the same Secret and
  # key), so that one token scrapes both.
  - name: metrics-token
    secret:
      secretName: {{ include "loads.metricsTokenSecretName" .ctx }}
      items:
        - key: {{ $values.controller.metricsToken.key }}
          path: token
      defaultMode: 288
{{- end }}

{{/*
The pod template of the worker pods the launcher creates (loads-controller --worker-pod-template),
as JSON: the ConfigMap <fullname>-worker-pod holds it, and the controller's checksum/worker-pod
annotation hashes it. loads.workerPod, with the launched pods' labels (commonLabels, then
launcher.podLabels over them), annotations and placement values. The launcher sets its own parts
over it (its labels, image, its args before these, resources, /tmp and token volumes,
restartPolicy). Keys are sorted (toPrettyJson), so equal values give equal text.
*/}}
{{- define "loads.workerPodTemplate" -}}
{{- $launcher := .Values.launcher }}
{{- $metadata := dict }}
{{- $labels := merge (dict) (deepCopy ($launcher.podLabels | default dict)) (deepCopy (.Values.commonLabels | default dict)) }}
{{- with $labels }}
{{- $_ := set $metadata "labels" . }}
{{- end }}
{{- with $launcher.podAnnotations }}
{{- $_ := set $metadata "annotations" . }}
{{- end }}
{{- $spec := include "loads.workerPod" (dict "ctx" . "launched" true) | fromYaml }}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" "priorityClassName" }}
{{- with get $launcher $key }}
{{- $_ := set $spec $key . }}
{{- end }}
{{- end }}
{{- $pod := dict "apiVersion" "v1" "kind" "Pod" "spec" $spec }}
{{- with $metadata }}
{{- $_ := set $pod "metadata" . }}
{{- end }}
{{- toPrettyJson $pod }}
{{- end }}

{{/*
The controller's ServiceAccount: serviceAccount.name, else <fullname>-controller when the chart
creates it; empty (the namespace's default account) when it creates none and none is named.
*/}}
{{- define "loads.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "loads.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The spec of a PodDisruptionBudget; call with (dict "ctx" $ "pdb" VALUES "what" "controller"
"component" "controller" "default" (dict "minAvailable" 1)). minAvailable or maxUnavailable from
the values, the default when both are empty; both set fails.
*/}}
{{- define "loads.pdbSpec" -}}
{{- $min := toString .pdb.minAvailable }}
{{- $max := toString .pdb.maxUnavailable }}
{{- if and $min $max }}
{{- fail (printf "%s.podDisruptionBudget: give minAvailable (%s) or maxUnavailable (%s), not both" .what $min $max) }}
{{- end }}
{{- $budget := .default }}
{{- if $min }}
{{- $budget = dict "minAvailable" .pdb.minAvailable }}
{{- else if $max }}
{{- $budget = dict "maxUnavailable" .pdb.maxUnavailable }}
{{- end }}
{{- toYaml $budget }}
selector:
  matchLabels:
    {{- include "loads.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
{{- end }}

{{/*
Fails when an extra volume takes the name of one of the chart's; call with (dict "volumes"
VALUES "reserved" (list "tokens" "tmp") "what" "controller").
*/}}
{{- define "loads.checkExtraVolumes" -}}
{{- range .volumes }}
{{- if has .name $.reserved }}
{{- fail (printf "%s.extraVolumes: the name %q is one of the chart's volumes (%s): choose another" $.what .name (join ", " $.reserved)) }}
{{- end }}
{{- end }}
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

{{/*
TLS on the gRPC API. Where the controller's certificate comes from: "" (tls.enabled is false),
"existing" (tls.existingSecret), "cert-manager" (a Certificate the chart renders) or "generated"
(a CA and a certificate the chart generates, kept on upgrades). Fails on values that contradict
each other: values.schema.json refuses them too, but a render without the schema (helm template
--skip-schema-validation) must not pick one of them silently.
*/}}
{{- define "loads.tlsSource" -}}
{{- $tls := .Values.tls }}
{{- if $tls.enabled }}
{{- if and $tls.existingSecret $tls.certManager.enabled }}
{{- fail (printf "tls.existingSecret (%s) and tls.certManager.enabled are two sources of one certificate: choose one" $tls.existingSecret) }}
{{- end }}
{{- if and $tls.clientCA.secretName .Values.tests.enabled (not .Values.tests.clientCertSecret) }}
{{- fail (printf "tls.clientCA (%s) makes every gRPC client present a certificate, the `helm test` pod too: set tests.clientCertSecret to a kubernetes.io/tls Secret with a client certificate signed by that CA, or tests.enabled=false" $tls.clientCA.secretName) }}
{{- end }}
{{- if $tls.existingSecret }}
{{- print "existing" }}
{{- else if $tls.certManager.enabled }}
{{- if not $tls.certManager.issuerRef.name }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name: the Issuer or ClusterIssuer (tls.certManager.issuerRef.kind) that signs the controller's certificate" }}
{{- end }}
{{- print "cert-manager" }}
{{- else }}
{{- if not .Values.auth.generate }}
{{- fail "auth.generate is false (the GitOps mode: the chart generates nothing random) but tls.enabled with neither tls.existingSecret nor tls.certManager.enabled would make the chart generate a certificate on every render: create a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt and name it in tls.existingSecret, or set tls.certManager.enabled=true with tls.certManager.issuerRef" }}
{{- end }}
{{- print "generated" }}
{{- end }}
{{- else if $tls.clientCA.secretName }}
{{- fail (printf "tls.clientCA (%s) is mTLS, which needs tls.enabled=true" $tls.clientCA.secretName) }}
{{- end }}
{{- end }}

{{/* The Secret with the controller's tls.crt, tls.key and ca.crt: tls.existingSecret, else <fullname>-tls. */}}
{{- define "loads.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- include "loads.componentName" (dict "ctx" . "suffix" "tls") }}
{{- end }}
{{- end }}

{{/*
The DNS names of the controller's certificate, space-separated: the Service's names as clients in
the cluster write them (the `helm test` pod uses the first), and localhost for port-forwards. Its
one IP address, 127.0.0.1 (port-forwards too), is not in this list.
*/}}
{{- define "loads.tlsDnsNames" -}}
{{- $name := include "loads.controllerName" . }}
{{- $ns := include "loads.namespace" . }}
{{- list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns .Values.clusterDomain) "localhost" | join " " }}
{{- end }}

{{/*
The chart-generated CA and server certificate, once per render, kept in .Values as the tokens are
(loads.generateTokens). The certificate of the Secret in the cluster (an upgrade) is kept when the
Secret has all three keys and was made for the same names (its annotation
loads/subject-alt-names): two upgrades then render the same Secret, byte for byte. Otherwise a new
CA signs a new certificate (genCAWithKey, genSignedCertWithKey: ECDSA P-256 keys, quick to make,
valid tls.generated.validityDays), and the CA's key is dropped: that CA can sign nothing else.
Outputs nothing.
*/}}
{{- define "loads.generateTLS" -}}
{{- if not (hasKey .Values "loadsGeneratedTLS") }}
{{- $dnsNames := include "loads.tlsDnsNames" . }}
{{- $sans := printf "%s 127.0.0.1" $dnsNames | replace " " "," }}
{{- $secret := lookup "v1" "Secret" (include "loads.namespace" .) (include "loads.tlsSecretName" .) | default dict }}
{{- $data := get $secret "data" | default dict }}
{{- $annotations := get (get $secret "metadata" | default dict) "annotations" | default dict }}
{{- $crt := get $data "tls.crt" | toString | b64dec }}
{{- $key := get $data "tls.key" | toString | b64dec }}
{{- $ca := get $data "ca.crt" | toString | b64dec }}
{{- if not (and $crt $key $ca (eq (get $annotations "loads/subject-alt-names" | toString) $sans)) }}
{{- $name := include "loads.controllerName" . }}
{{- $days := int .Values.tls.generated.validityDays }}
{{- $dns := list }}
{{- range splitList " " $dnsNames }}
{{- $dns = append $dns . }}
{{- end }}
{{- $authority := genCAWithKey (printf "%s-ca" $name) $days (genPrivateKey "ecdsa") }}
{{- $cert := genSignedCertWithKey $name (list "127.0.0.1") $dns $days $authority (genPrivateKey "ecdsa") }}
{{- $crt = $cert.Cert }}
{{- $key = $cert.Key }}
{{- $ca = $authority.Cert }}
{{- end }}
{{- $_ := set .Values "loadsGeneratedTLS" (dict "crt" $crt "key" $key "ca" $ca "sans" $sans) }}
{{- end }}
{{- end }}

{{/*
CurveZMQ on the worker protocol. The Secret holding the controller's key (controller.key, a line
"secret: KEY") and, once the controller has started, its public key (public-key):
curve.existingSecret, else <fullname>-curve, which the chart generates.
*/}}
{{- define "loads.curveSecretName" -}}
{{- if .Values.curve.existingSecret }}
{{- .Values.curve.existingSecret }}
{{- else }}
{{- include "loads.componentName" (dict "ctx" . "suffix" "curve") }}
{{- end }}
{{- end }}

{{/*
The controller's CURVE secret key when the chart generates it, once per render, kept in .Values
as the tokens are (loads.generateTokens): `randAlphaNum 40` is a valid Z85 secret key (every
letter and digit is a Z85 character, and every 32-byte value is a Curve25519 secret key), the
public key being derived from it by the controller. The Secret in the cluster (an upgrade) keeps
its controller.key, and the public-key the controller wrote into it (so that an upgrade does not
take it away from the standing workers); a public-key without the controller.key it was derived
from is dropped with it. The GitOps mode (auth.generate=false) refuses to generate: fails.
Outputs nothing.
*/}}
{{- define "loads.generateCurveKey" -}}
{{- if not (hasKey .Values "loadsGeneratedCurve") }}
{{- if not .Values.auth.generate }}
{{- fail "auth.generate is false (the GitOps mode: the chart generates nothing random) but curve.enabled without curve.existingSecret would make the chart generate the controller's CURVE key on every render: create a Secret whose key controller.key holds a line \"secret: KEY\" (loads-controller keygen FILE, then kubectl create secret generic NAME --from-file=controller.key=FILE) and name it in curve.existingSecret, or set curve.enabled=false" }}
{{- end }}
{{- $secret := lookup "v1" "Secret" (include "loads.namespace" .) (include "loads.curveSecretName" .) | default dict }}
{{- $data := get $secret "data" | default dict }}
{{- $key := get $data "controller.key" | toString | b64dec }}
{{- $public := "" }}
{{- if $key }}
{{- $public = get $data "public-key" | toString | b64dec }}
{{- else }}
{{- $key = printf "secret: %s\n" (randAlphaNum 40) }}
{{- end }}
{{- $_ := set .Values "loadsGeneratedCurve" (dict "key" $key "publicKey" $public) }}
{{- end }}
{{- end }}

{{/*
checksum/curve for the pod annotations of the controller and the standing workers: the hash of
controller.key alone, so that both restart when the key changes (each reads it, or the public key
derived from it, at start), and not when the controller writes public-key into the Secret (which
would restart them once more after every new key). Nothing with curve.existingSecret, whose
content the chart does not know, nor without curve.enabled.
*/}}
{{- define "loads.curveChecksum" -}}
{{- if and .Values.curve.enabled (not .Values.curve.existingSecret) }}
{{- include "loads.generateCurveKey" . }}
checksum/curve: {{ .Values.loadsGeneratedCurve.key | sha256sum }}
{{- end }}
{{- end }}

{{/*
The one scrape endpoint of the ServiceMonitor and of the PodMonitor, as a list item; call with
(dict "ctx" $ "scrape" VALUES): serviceMonitor or podMonitor, which share these keys. It always
sends the metrics token: /metrics answers nothing else beyond the pod's loopback.
*/}}
{{- define "loads.scrapeEndpoint" -}}
- port: metrics
  path: /metrics
  {{- with .scrape.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with .scrape.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  {{- if .scrape.honorLabels }}
  honorLabels: true
  {{- end }}
  {{- with .scrape.relabelings }}
  relabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .scrape.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # /metrics answers only "Authorization: Bearer TOKEN" (--metrics-token-file). The Prometheus
  # Operator reads this Secret in the monitor's own namespace.
  authorization:
    type: Bearer
    credentials:
      name: {{ include "loads.monitorTokenSecretName" (dict "ctx" .ctx "namespace" (.scrape.namespace | default (include "loads.namespace" .ctx))) }}
      key: {{ .ctx.Values.controller.metricsToken.key }}
{{- end }}

{{/*
NOTES.txt: where a monitor in another namespace than the release's reads the metrics token; call
with (dict "ctx" $ "kind" "ServiceMonitor" "monitor" VALUES). Nothing in the release namespace.
*/}}
{{- define "loads.notesMonitorToken" -}}
{{- $ns := include "loads.namespace" .ctx }}
{{- $at := .monitor.namespace | default $ns }}
{{- if ne $at $ns }}
{{- if include "loads.metricsTokenGenerated" .ctx }}
  The Prometheus Operator reads the {{ .kind }}'s token in the namespace {{ $at }}: the chart copies
  it there, into the Secret {{ include "loads.monitorTokenSecretName" (dict "ctx" .ctx "namespace" $at) }}.
{{- else }}
  WARNING: the Prometheus Operator reads the {{ .kind }}'s token in its own namespace, {{ $at }}:
  create the Secret {{ include "loads.metricsTokenSecretName" .ctx }} there too, with the key {{ .ctx.Values.controller.metricsToken.key }}.
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether controller.allowTargets lets runs send requests to HOST:PORT, as loads-controller
--allow-target decides for a URL that names a host (common/include/loads/common/target_allow.h):
"true" or nothing. Call with (dict "patterns" LIST "host" NAME "port" PORT). A name is allowed
by a name pattern only, compared case-insensitively and not resolved: NAME (that host), *.DOMAIN
(hosts under DOMAIN, not DOMAIN itself), either optionally with :PORT; address and network
patterns never allow a name. An empty list allows every host (no --allow-target at all).
*/}}
{{- define "loads.allowsTarget" -}}
{{- $host := lower .host }}
{{- $allowed := not .patterns }}
{{- range .patterns }}
{{- $pattern := lower . }}
{{- $port := "" }}
{{- $parts := splitList ":" $pattern }}
{{- if eq (len $parts) 2 }}
{{- $pattern = first $parts }}
{{- $port = last $parts }}
{{- end }}
{{- if or (not $port) (eq (atoi $port) (int $.port)) }}
{{- if eq $pattern $host }}
{{- $allowed = true }}
{{- else if hasPrefix "*." $pattern }}
{{- $suffix := trimPrefix "*" $pattern }}
{{- if and (hasSuffix $suffix $host) (gt (len $host) (len $suffix)) }}
{{- $allowed = true }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $allowed }}true{{ end }}
{{- end }}

{{/*
The `helm test` pod's target, the host its run names: the headless Service <fullname>-test-run
(templates/tests/test-run-service.yaml), a .svc name that the default controller.allowTargets
allows.
*/}}
{{- define "loads.testTargetHost" -}}
{{- printf "%s.%s.svc" (include "loads.componentName" (dict "ctx" . "suffix" "test-run")) (include "loads.namespace" .) }}
{{- end }}
