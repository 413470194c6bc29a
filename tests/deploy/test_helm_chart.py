"""The Helm chart in deploy/helm/signal-sync, checked offline (no cluster).

* ``helm lint --strict`` and ``helm template`` with every example values file in ``ci/``;
* every rendered object of a core kind (the ``helm test`` Pod and the NetworkPolicy included)
  validated against the Kubernetes OpenAPI schemas of ``KUBE_VERSION``
  (``kubernetes-validate``, strict: unknown fields fail); the CRD kinds (ServiceMonitor,
  ScaledObject, TriggerAuthentication, PrometheusRule) by assertions on their fields, the
  PrometheusRule also against a strict JSON schema of the CRD's fields, with every expression
  parsed by a PromQL parser and every metric and label it names checked against the worker's
  own metrics registry;
* the rendered worker config loaded by the worker's own ``load_settings`` with the pod's
  mounts reproduced in a temp dir (the worker's and the ``helm test`` Pod's), so a config
  path that no volume provides fails here;
* assertions: no secret in a ConfigMap, probes, securityContext, grace period, checksum
  roll, existingSecret, KEDA triggers per internal topic, the debugger off by default,
  NetworkPolicy, and values.schema.json / template checks that reject bad values.

helm comes from ``<repo>/.cache/bin/helm`` (``bash dev/install_tools.sh``) or PATH. Without
it these tests fail when ``CI=true`` and are skipped otherwise.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from signal_sync.config import (
    DebuggerSettings,
    DeliverySettings,
    KafkaSettings,
    MailgunIntegration,
    MauticIntegration,
    OutcomeSettings,
    WorkerSettings,
    load_settings,
)
from signal_sync.observability.metrics import Metrics
from signal_sync.streams.client_properties import OWNED
from signal_sync.streams.internal import delivery_topic
from tests.support.pki import CLIENT_KEY_PASSWORD, make_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "signal-sync"
CI_DIR = CHART / "ci"
CI_VALUES = sorted(CI_DIR.glob("*.yaml"))
EXPECTED_CI_FILES = {
    "minimal-values.yaml",
    "sasl-tls-values.yaml",
    "keda-values.yaml",
    "existing-secret-values.yaml",
    "exposure-values.yaml",
    "mtls-values.yaml",
    "oauthbearer-values.yaml",
    "privacy-values.yaml",
    "mapping-values.yaml",
}
KUBE_VERSION = "1.30.0"  # oldest Kubernetes the manifests are validated against
RELEASE = "rel"
NAMESPACE = "signal"
FULLNAME = f"{RELEASE}-signal-sync"
CONFIG_PATH = "/etc/signal-sync/config.yaml"
DEFAULT_GRACE_S = 25.0

# Kinds with a schema in kubernetes-validate; everything else must be a known CRD kind.
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "Pod",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication", "PrometheusRule"}

# Worker-config fields the chart sets itself (values.schema.json must not offer them).
CHART_MANAGED = {
    "kafka": {
        "ssl_ca_file",
        "sasl_password_file",
        "ssl_certificate_file",
        "ssl_key_file",
        "ssl_key_password_file",
        "sasl_oauthbearer_client_secret_file",
        "group_instance_id",  # <namespace>.<pod name> of the StatefulSet pod
    },
    "worker": {"web_bind", "state_dir"},
    "outcomes": {"contact_id_key_file"},  # from keyedContactId and the credentials Secret
    "debugger": set(DebuggerSettings.model_fields),  # from the top-level debugger values
}
CHART_ONLY_INTEGRATION_FIELDS = {"secretKey"}
SECTION_MODELS = {
    "kafka": KafkaSettings,
    "worker": WorkerSettings,
    "delivery": DeliverySettings,
    "outcomes": OutcomeSettings,
    "debugger": DebuggerSettings,
}
SCHEMA_ERROR = "values don't meet the specifications of the schema"


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _values_id(path: Path) -> str:
    return path.name.removesuffix(".yaml")


def _load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


# ---------------------------------------------------------------------------- helm runner


class HelmFailed(AssertionError):
    """helm exited non-zero; ``stderr`` holds its message."""

    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed:\n{stderr}")
        self.stderr = stderr


@dataclass
class Helm:
    binary: str
    env: dict[str, str]

    def run(self, *args: str, chart: Path = CHART) -> str:
        argv = list(args)
        proc = subprocess.run(
            [self.binary, *argv],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=chart,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise HelmFailed(argv, proc.stderr + proc.stdout)
        return proc.stdout


@dataclass
class Rendered:
    """The objects ``helm template`` produced, with lookups by kind and name."""

    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) <= 1, f"{len(found)} objects of kind {kind} named {name}"
        return found[0] if found else None

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = self.get(kind, name)
        assert found is not None, f"no {kind} {name or ''} rendered; kinds: {self.kinds()}"
        return found

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    @property
    def workload(self) -> dict[str, Any]:
        """The worker pods' controller: the StatefulSet (persistence) or the Deployment."""
        (found,) = [d for d in self.docs if d["kind"] in WORKLOAD_KINDS and d["metadata"]["name"] == FULLNAME]
        return found

    @property
    def pod(self) -> dict[str, Any]:
        """A worker pod's spec; a StatefulSet's pods also get a volume per claim template (pod 0's)."""
        spec = self.workload["spec"]
        pod = dict(spec["template"]["spec"])
        claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
        claimed = [{"name": c, "persistentVolumeClaim": {"claimName": f"{c}-{FULLNAME}-0"}} for c in claims]
        return pod | {"volumes": [*pod["volumes"], *claimed]}

    @property
    def container(self) -> dict[str, Any]:
        (worker,) = [c for c in self.pod["containers"] if c["name"] == "worker"]
        return worker

    @property
    def config_text(self) -> str:
        return self.one("ConfigMap", FULLNAME)["data"]["config.yaml"]

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_text)

    @property
    def test_pod(self) -> dict[str, Any] | None:
        """The ``helm test`` Pod, if rendered."""
        found = [p for p in self.all("Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
        assert len(found) <= 1
        return found[0] if found else None

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.one("Secret", name)
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    local = REPO_ROOT / ".cache" / "bin" / "helm"
    binary = str(local) if local.is_file() and os.access(local, os.X_OK) else shutil.which("helm")
    if binary is None:
        message = "helm not found in .cache/bin or on PATH; run `bash dev/install_tools.sh`"
        if _is_ci():
            pytest.fail(f"{message} (CI=true, so this is a failure, not a skip)")
        pytest.skip(message)
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return Helm(binary, env)


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., Rendered]:
    """``render(values_file, *extra_args)`` → Rendered; cached, every render is deterministic."""
    cache: dict[tuple[str, ...], Rendered] = {}

    def _render(values: Path | None, *extra: str) -> Rendered:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
        if values is not None:
            args += ["--values", str(values)]
        args += list(extra)
        key = tuple(args)
        if key not in cache:
            out = helm.run(*args)
            cache[key] = Rendered([d for d in yaml.safe_load_all(out) if d])
        return cache[key]

    return _render


def _expect_failure(helm: Helm, values: Path | None, *extra: str) -> str:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["--values", str(values)]
    with pytest.raises(HelmFailed) as failed:
        helm.run(*args, *extra)
    return failed.value.stderr


MINIMAL = CI_DIR / "minimal-values.yaml"
SASL_TLS = CI_DIR / "sasl-tls-values.yaml"
MTLS = CI_DIR / "mtls-values.yaml"
OAUTHBEARER = CI_DIR / "oauthbearer-values.yaml"
KEDA = CI_DIR / "keda-values.yaml"
EXISTING = CI_DIR / "existing-secret-values.yaml"
EXPOSURE = CI_DIR / "exposure-values.yaml"
PRIVACY = CI_DIR / "privacy-values.yaml"

ci_values = pytest.mark.parametrize("values", CI_VALUES, ids=_values_id)


def test_ci_values_files_present() -> None:
    assert EXPECTED_CI_FILES <= {p.name for p in CI_VALUES}


# ------------------------------------------------------------------------ lint and schemas


@ci_values
def test_lint_strict(helm: Helm, values: Path) -> None:
    out = helm.run("lint", "--strict", str(CHART), "--values", str(values), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in out


def test_default_values_need_an_integration(helm: Helm) -> None:
    stderr = _expect_failure(helm, None)
    assert SCHEMA_ERROR in stderr
    assert "/integrations" in stderr


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    """The kubernetes-validate package (test extra): a failure under CI=true, else a skip."""
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate is not installed (pip install -e '.[test]')"
        if _is_ci():
            pytest.fail(f"{message} (CI=true, so this is a failure, not a skip)")
        pytest.skip(message)
    return kubernetes_validate


@ci_values
def test_rendered_objects_match_kubernetes_schemas(
    render: Callable[..., Rendered], kubernetes_validate: Any, values: Path
) -> None:
    rendered = render(values)
    assert {"ConfigMap", "Service", "ServiceAccount"} <= set(rendered.kinds())
    assert rendered.workload["kind"] in WORKLOAD_KINDS
    problems = []
    for doc in rendered.docs:
        kind = doc["kind"]
        if kind in CRD_KINDS:
            continue  # no OpenAPI schema offline; see the CRD tests below
        assert kind in CORE_KINDS, f"unexpected kind {kind}: add it to CORE_KINDS or CRD_KINDS"
        assert doc["metadata"].get("namespace") in (None, NAMESPACE)
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{kind}/{doc['metadata']['name']} {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("section", sorted(SECTION_MODELS))
def test_schema_offers_exactly_the_worker_fields(section: str) -> None:
    """Drift check: a worker config field the chart cannot set (or a chart field the worker
    rejects, its models forbid extras) fails here, naming the field."""
    sections = _schema()["properties"]["config"]["properties"]
    schema_fields = set(sections[section]["properties"]) if section in sections else set()
    model_fields = set(SECTION_MODELS[section].model_fields)
    managed = CHART_MANAGED.get(section, set())
    assert schema_fields - model_fields == set(), "schema offers fields the worker does not know"
    assert model_fields - managed - schema_fields == set(), "worker fields missing in values.schema.json"
    assert not schema_fields & managed, "chart-managed fields must not be settable"


@pytest.mark.parametrize(
    ("definition", "model"),
    [("mauticIntegration", MauticIntegration), ("mailgunIntegration", MailgunIntegration)],
)
def test_schema_integration_fields_match_the_worker(definition: str, model: type) -> None:
    fields = set(_schema()["definitions"][definition]["properties"]) - CHART_ONLY_INTEGRATION_FIELDS
    assert fields == set(model.model_fields)


# ------------------------------------------------------------- the worker config and secrets


def _credential_values(values: Path) -> list[str]:
    creds = _load_yaml(values).get("credentials") or {}
    found = [v for v in (creds.get("integrations") or {}).values() if v]
    for key in ("kafkaSaslPassword", "kafkaOauthClientSecret", "contactIdKey"):
        if creds.get(key):
            found.append(creds[key])
    return found


@ci_values
def test_no_secret_in_configmaps_or_pod_spec(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    secrets = set(_credential_values(values))
    chart_secret = rendered.get("Secret", FULLNAME)
    if chart_secret is not None:
        secrets |= set(rendered.secret_data(FULLNAME).values())
    assert all(len(s) >= 8 for s in secrets), "test secrets must be long enough to search for"
    public = [yaml.safe_dump(cm) for cm in rendered.all("ConfigMap")]
    public.append(yaml.safe_dump(rendered.workload))
    for text in public:
        for secret in secrets:
            assert secret not in text
            assert base64.b64encode(secret.encode()).decode() not in text
    config = rendered.config
    for integration in config["integrations"]:
        for field in ("api_password", "api_key"):
            if field in integration:  # only env references may be inline
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", integration[field])
    for field in ("sasl_password", "sasl_oauthbearer_client_secret", "ssl_key_password"):
        if field in config["kafka"]:
            assert config["kafka"][field].startswith("${")


def _materialize_pod_files(
    rendered: Rendered, root: Path, pod: dict[str, Any] | None = None, container: dict[str, Any] | None = None
) -> dict[str, str]:
    """Recreate the files a pod (default: the worker's) sees under ``root``; returns mount
    path → local path.

    Secret volumes get their items (values from the chart-made Secret, else placeholders
    named after the key), so a config path that no mounted item provides is missing.
    """
    pod = pod if pod is not None else rendered.pod
    container = container if container is not None else rendered.container
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        local = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = str(local)
        volume = volumes[mount["name"]]
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            data = rendered.secret_data(name) if rendered.get("Secret", name) else {}
            items = volume["secret"].get("items")
            assert items, f"secret volume {mount['name']} should list the keys it needs"
            for item in items:
                content = data.get(item["key"], f"placeholder-for-{item['key']}")
                if mount["name"] == "kafka-ca":
                    content = "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n"
                if mount["name"] == "kafka-client":  # the worker loads these at start: real ones
                    content = _client_certificate_files()[item["path"]]
                (local / item["path"]).write_text(content, encoding="utf-8")
    return mounts


@functools.cache
def _client_certificate_files() -> dict[str, str]:
    """A client certificate, its encrypted key and the key's password, by the file names the
    chart mounts them under (tests/support/pki.py, openssl)."""
    with tempfile.TemporaryDirectory(prefix="chart-pki-") as folder:
        pki = make_pki(Path(folder))
        return {
            "tls.crt": pki.client_cert.read_text(),
            "tls.key": pki.client_key_encrypted.read_text(),
            "key-password": CLIENT_KEY_PASSWORD,
        }


def _load_config_as_pod_sees_it(
    rendered: Rendered, root: Path, pod: dict[str, Any], container: dict[str, Any]
) -> tuple[Any, dict[str, str]]:
    """The worker config loaded with ``load_settings`` from the files ``container`` of ``pod`` sees."""
    args = container["args"]
    assert args[-2:] == ["-c", CONFIG_PATH]
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert f"{config_mount['mountPath']}/config.yaml" == CONFIG_PATH
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == FULLNAME
    mounts = _materialize_pod_files(rendered, root / "pod", pod, container)
    # one pass, so a local path under /tmp is not rewritten again by the /tmp mount
    mount_re = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    text = re.sub(
        rf"(?<=: )({mount_re})(?=/|$)", lambda m: mounts[m.group(1)], rendered.config_text, flags=re.M
    )
    config_file = root / "config.yaml"
    config_file.write_text(text, encoding="utf-8")
    return load_settings(config_file, environ=container_env(container, POD_FIELDS)), mounts


KUBELET_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
POD_FIELDS = {"metadata.name": f"{FULLNAME}-0", "metadata.namespace": "analytics"}
"""What the kubelet gives the first StatefulSet pod of the rendered release for these fields."""


def container_env(container: dict[str, Any], fields: dict[str, str]) -> dict[str, str]:
    """The environment the kubelet gives ``container``: a ``fieldRef`` is the pod's field from
    ``fields``, another ``valueFrom`` (a Secret's key) a placeholder, and ``$(NAME)`` in a value is
    an earlier variable's value (a name not defined before stays as written, as the kubelet does)."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = KUBELET_REFERENCE.sub(lambda m: env.get(m[1], m[0]), entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            env[name] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[name] = f"env-{name}"
    return env


@ci_values
def test_rendered_config_loads_in_the_worker(
    render: Callable[..., Rendered], values: Path, tmp_path: Path
) -> None:
    """The ConfigMap is a valid worker config whose secret files are exactly the mounted items."""
    rendered = render(values)
    settings, mounts = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)

    assert settings.worker.web_bind == "0.0.0.0"
    state_mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == "state")
    assert settings.worker.state_dir == Path(mounts[state_mount["mountPath"]])
    chart_secret = rendered.secret_data(FULLNAME) if rendered.get("Secret", FULLNAME) else {}
    all_creds = _load_yaml(values).get("credentials") or {}
    creds = all_creds.get("integrations") or {}
    if settings.kafka.security_protocol.startswith("SASL_") and all_creds.get("kafkaSaslPassword"):
        assert settings.kafka.sasl_password is not None
        assert settings.kafka.sasl_password.get_secret_value() == all_creds["kafkaSaslPassword"]
    if settings.kafka.sasl_mechanism == "OAUTHBEARER" and all_creds.get("kafkaOauthClientSecret"):
        assert settings.kafka.sasl_oauthbearer_client_secret is not None
        secret = settings.kafka.sasl_oauthbearer_client_secret.get_secret_value()
        assert secret == all_creds["kafkaOauthClientSecret"]
    if (_load_yaml(values).get("kafkaTls") or {}).get("clientCertSecret", {}).get("passwordKey"):
        assert settings.kafka.ssl_key_password is not None
        assert settings.kafka.ssl_key_password.get_secret_value() == CLIENT_KEY_PASSWORD
    for integration in settings.integrations:
        secret = integration.secret()
        if integration.id in creds:  # chart-made Secret: the value from values reaches the worker
            assert secret == creds[integration.id]
            assert secret in chart_secret.values()
        assert secret, integration.id


MODELS: dict[str, type[MauticIntegration] | type[MailgunIntegration]] = {
    "mautic": MauticIntegration,
    "mailgun": MailgunIntegration,
}


def test_mapping_and_events_reach_the_worker_config_as_written(render: Callable[..., Rendered]) -> None:
    """The blocks pass through unchanged, nulls included (a dropped field, an event no longer
    taken; helm writes the keys sorted), and the worker compiles them from the rendered file."""
    values = _load_yaml(CI_DIR / "mapping-values.yaml")
    rendered = render(CI_DIR / "mapping-values.yaml").config
    for given, written in zip(values["integrations"], rendered["integrations"], strict=True):
        assert (written.get("mapping"), written.get("events")) == (given["mapping"], given["events"])
    secrets = {"mautic": {"api_password": "x"}, "mailgun": {"api_key": "x"}}
    mautic, mailgun = (
        MODELS[written["type"]].model_validate(
            {**{k: v for k, v in written.items() if not k.endswith("_file")}, **secrets[written["type"]]}
        )
        for written in rendered["integrations"]
    )
    assert "Order Completed" in mautic.field_mapping.events and "page" not in mailgun.field_mapping.events
    edits = {edit.field: edit.get is None for edit in mautic.field_mapping.edits_for("page")}
    assert edits == {"company_size": False, "company": False, "phone": True, "signal_channel": False}
    assert rendered["integrations"][0]["segments"] == values["integrations"][0]["segments"]
    assert mautic.segment_plan["Order Completed"] == (5, 1) and mautic.segment_plan["page"] == (1,)


# --------------------------------------------------------------------- pod-level assertions


@ci_values
def test_probes_hit_health_and_ready(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    container = rendered.container
    port = rendered.config["worker"]["web_port"]
    (http,) = [p for p in container["ports"] if p["name"] == "http"]
    assert http["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    service = rendered.one("Service", FULLNAME)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"].items()
        <= rendered.workload["spec"]["template"]["metadata"]["labels"].items()
    )


@ci_values
def test_security_context_is_locked_down(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    pod_sc = rendered.pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = rendered.container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert rendered.pod["automountServiceAccountToken"] is False
    # writable places on a read-only root: the state dir (a claim, or an emptyDir) and /tmp
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    writable = {
        m["mountPath"]
        for m in rendered.container["volumeMounts"]
        if {"emptyDir", "persistentVolumeClaim"} & volumes[m["name"]].keys()
    }
    assert writable == {rendered.config["worker"]["state_dir"], "/tmp"}


@ci_values
def test_termination_grace_exceeds_worker_grace(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    grace = rendered.config["worker"].get("shutdown_grace_s", DEFAULT_GRACE_S)
    assert rendered.pod["terminationGracePeriodSeconds"] > grace


@ci_values
def test_pods_spread_and_disruption_budget(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    selector = rendered.workload["spec"]["selector"]["matchLabels"]
    pod_labels = rendered.workload["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    anti = rendered.pod["affinity"]["podAntiAffinity"]
    terms = [t.get("podAffinityTerm", t) for terms in anti.values() for t in terms]
    assert terms and all(t["labelSelector"]["matchLabels"] == selector for t in terms)
    spread = rendered.pod["topologySpreadConstraints"]
    assert spread and all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    pdb = rendered.one("PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert ("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"])


def test_checksum_annotations_roll_pods_on_change(render: Callable[..., Rendered]) -> None:
    def annotations(*extra: str) -> dict[str, str]:
        return render(MINIMAL, *extra).workload["spec"]["template"]["metadata"]["annotations"]

    base = annotations()
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/secret"])
    config_change = annotations("--set", "config.delivery.timeout_s=3")
    assert config_change["checksum/config"] != base["checksum/config"]
    assert config_change["checksum/secret"] == base["checksum/secret"]
    integration_change = annotations("--set", "integrations[0].api_user=someone-else")
    assert integration_change["checksum/config"] != base["checksum/config"]
    secret_change = annotations("--set", "credentials.integrations.mautic-main=rotated-password-1")
    assert secret_change["checksum/secret"] != base["checksum/secret"]
    assert secret_change["checksum/config"] == base["checksum/config"]
    unrelated = annotations("--set", "resources.requests.cpu=200m")
    assert unrelated["checksum/config"] == base["checksum/config"]


def test_persistence_gives_each_pod_a_claim_for_the_state_folder(render: Callable[..., Rendered]) -> None:
    rendered = render(MINIMAL)
    workload = rendered.workload
    assert workload["kind"] == "StatefulSet"
    spec = workload["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
    assert mounts["state"] == rendered.config["worker"]["state_dir"]
    assert "state" not in {v["name"] for v in spec["template"]["spec"]["volumes"]}  # the claim is
    assert rendered.one("Service", spec["serviceName"])
    assert spec["podManagementPolicy"] == "Parallel"
    assert "strategy" not in spec
    sized = render(MINIMAL, "--set", "persistence.storageClass=fast-ssd", "--set", "persistence.size=10Gi")
    (claim,) = sized.workload["spec"]["volumeClaimTemplates"]
    assert (claim["spec"]["storageClassName"], claim["spec"]["resources"]["requests"]["storage"]) == (
        "fast-ssd",
        "10Gi",
    )


def test_statefulset_pods_are_static_group_members_named_after_namespace_and_pod(
    render: Callable[..., Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pod's ``group_instance_id`` is ``<namespace>.<pod name>``: the same release name in two
    namespaces of one cluster gives two names, and a restarted pod keeps its own."""
    rendered = render(MINIMAL)
    instance = container_env(rendered.container, POD_FIELDS)["SIGNAL_SYNC_KAFKA__GROUP_INSTANCE_ID"]
    monkeypatch.setenv("SIGNAL_SYNC_KAFKA__GROUP_INSTANCE_ID", instance)  # what the kubelet sets
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    assert settings.kafka.group_instance_id == f"analytics.{FULLNAME}-0"
    other = container_env(rendered.container, {"metadata.name": f"{FULLNAME}-0", "metadata.namespace": "eu"})
    assert other["SIGNAL_SYNC_KAFKA__GROUP_INSTANCE_ID"] == f"eu.{FULLNAME}-0"
    # a Deployment's pods get new names on every rollout: each would hold its partitions unread
    # for the session timeout after it is gone, so they join as new members
    ephemeral = render(MINIMAL, "--set", "persistence.enabled=false")
    assert "SIGNAL_SYNC_KAFKA__GROUP_INSTANCE_ID" not in {e["name"] for e in ephemeral.container["env"]}


def test_without_persistence_the_state_folder_is_an_emptydir(render: Callable[..., Rendered]) -> None:
    rendered = render(MINIMAL, "--set", "persistence.enabled=false")
    spec = rendered.workload["spec"]
    assert rendered.workload["kind"] == "Deployment"
    assert "volumeClaimTemplates" not in spec
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}


def test_existing_secret_replaces_the_chart_secret(render: Callable[..., Rendered]) -> None:
    rendered = render(EXISTING)
    assert rendered.all("Secret") == []
    existing = _load_yaml(EXISTING)["credentials"]["existingSecret"]
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == existing
    keys = {i["key"] for i in volumes["credentials"]["secret"]["items"]}
    ids = {i["id"] for i in _load_yaml(EXISTING)["integrations"]}
    assert keys == ids | {"kafka-sasl-password"}
    annotations = rendered.workload["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    assert "checksum/config" in annotations
    # this example also uses the HPA: replicas are left to it
    assert rendered.get("HorizontalPodAutoscaler", FULLNAME) is not None
    assert "replicas" not in rendered.workload["spec"]


def test_hpa_scales_the_worker_pods_on_cpu(render: Callable[..., Rendered]) -> None:
    rendered = render(EXISTING)
    autoscaling = _load_yaml(EXISTING)["autoscaling"]
    hpa = rendered.one("HorizontalPodAutoscaler", FULLNAME)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": rendered.workload["kind"],
        "name": FULLNAME,
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (
        autoscaling["minReplicas"],
        autoscaling["maxReplicas"],
    )
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == autoscaling["targetCPUUtilizationPercentage"]
    assert rendered.get("ScaledObject") is None
    assert render(MINIMAL).workload["spec"]["replicas"] == 2


def test_existing_secret_with_keda_points_the_password_at_it(render: Callable[..., Rendered]) -> None:
    rendered = render(KEDA, "--set", "credentials.existingSecret=kafka-creds")
    assert rendered.get("Secret", FULLNAME) is None
    auth = rendered.one("TriggerAuthentication")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"]["name"] == "kafka-creds"
    assert refs["password"]["key"] == "kafka-sasl-password"


# ------------------------------------------------------------------------- Kafka security


def test_sasl_tls_settings_and_ca_mount(render: Callable[..., Rendered]) -> None:
    rendered = render(SASL_TLS)
    values = _load_yaml(SASL_TLS)
    kafka = rendered.config["kafka"]
    assert kafka["security_protocol"] == "SASL_SSL"
    assert kafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kafka["sasl_username"] == "signal-sync"
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    ca = volumes["kafka-ca"]["secret"]
    assert ca["secretName"] == values["kafkaTls"]["caSecret"]["name"]
    assert ca["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert kafka["ssl_ca_file"] == f"{mounts['kafka-ca']['mountPath']}/ca.crt"
    assert kafka["sasl_password_file"].startswith(mounts["credentials"]["mountPath"] + "/")
    assert rendered.secret_data(FULLNAME)["kafka-sasl-password"] == values["credentials"]["kafkaSaslPassword"]
    assert all(
        m.get("readOnly") for name, m in mounts.items() if name in {"config", "credentials", "kafka-ca"}
    )
    # secretKey renames the Secret key, not the file the config points at
    items = {i["path"]: i["key"] for i in volumes["credentials"]["secret"]["items"]}
    assert items["mautic-main"] == "mautic-password"


def test_client_certificate_is_mounted_and_configured(render: Callable[..., Rendered]) -> None:
    rendered = render(MTLS)
    cert = _load_yaml(MTLS)["kafkaTls"]["clientCertSecret"]
    kafka = rendered.config["kafka"]
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    volume = {v["name"]: v for v in rendered.pod["volumes"]}["kafka-client"]["secret"]
    assert volume["secretName"] == cert["name"] and mounts["kafka-client"]["readOnly"]
    items = {i["path"]: i["key"] for i in volume["items"]}
    assert items == {
        "tls.crt": cert["certKey"],
        "tls.key": cert["keyKey"],
        "key-password": cert["passwordKey"],
    }
    folder = mounts["kafka-client"]["mountPath"]
    assert (kafka["ssl_certificate_file"], kafka["ssl_key_file"], kafka["ssl_key_password_file"]) == (
        f"{folder}/tls.crt",
        f"{folder}/tls.key",
        f"{folder}/key-password",
    )
    # KEDA connects with the same certificate, key and password
    refs = {r["parameter"]: r for r in rendered.one("TriggerAuthentication")["spec"]["secretTargetRef"]}
    assert {p: (refs[p]["name"], refs[p]["key"]) for p in ("cert", "key", "keyPassword")} == {
        "cert": (cert["name"], cert["certKey"]),
        "key": (cert["name"], cert["keyKey"]),
        "keyPassword": (cert["name"], cert["passwordKey"]),
    }
    unencrypted = render(MTLS, "--set", "kafkaTls.clientCertSecret.passwordKey=")
    assert "ssl_key_password_file" not in unencrypted.config["kafka"]
    assert "keyPassword" not in {
        r["parameter"] for r in unencrypted.one("TriggerAuthentication")["spec"]["secretTargetRef"]
    }
    assert "kafka-client" not in {v["name"] for v in render(SASL_TLS).pod["volumes"]}


def test_oauthbearer_client_secret_from_the_credentials_secret(render: Callable[..., Rendered]) -> None:
    rendered = render(OAUTHBEARER)
    values = _load_yaml(OAUTHBEARER)
    kafka = rendered.config["kafka"]
    assert kafka["sasl_mechanism"] == "OAUTHBEARER" and "sasl_password_file" not in kafka
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    assert kafka["sasl_oauthbearer_client_secret_file"] == (
        f"{mounts['credentials']['mountPath']}/kafka-oauth-client-secret"
    )
    secret = rendered.secret_data(FULLNAME)
    assert secret["kafka-oauth-client-secret"] == values["credentials"]["kafkaOauthClientSecret"]
    assert "kafka-sasl-password" not in secret
    # KEDA's oauthbearer: the client id as user name, the secret from the credentials Secret
    refs = {r["parameter"]: r for r in rendered.one("TriggerAuthentication")["spec"]["secretTargetRef"]}
    resolved = {parameter: rendered.secret_data(ref["name"])[ref["key"]] for parameter, ref in refs.items()}
    assert resolved == {
        "sasl": "oauthbearer",
        "tls": "enable",
        "username": values["config"]["kafka"]["sasl_oauthbearer_client_id"],
        "password": values["credentials"]["kafkaOauthClientSecret"],
        "oauthTokenEndpointUri": values["config"]["kafka"]["sasl_oauthbearer_token_endpoint_url"],
        "scopes": values["config"]["kafka"]["sasl_oauthbearer_scope"],
    }
    existing = render(OAUTHBEARER, "--set", "credentials.existingSecret=kafka-creds")
    refs = {r["parameter"]: r for r in existing.one("TriggerAuthentication")["spec"]["secretTargetRef"]}
    assert (refs["password"]["name"], refs["password"]["key"]) == ("kafka-creds", "kafka-oauth-client-secret")


def test_schema_refuses_the_librdkafka_properties_the_worker_refuses() -> None:
    kafka = _schema()["properties"]["config"]["properties"]["kafka"]["properties"]
    assert set(kafka["client_config"]["propertyNames"]["not"]["enum"]) == set(OWNED)


def test_service_monitor_scrapes_metrics(render: Callable[..., Rendered]) -> None:
    rendered = render(SASL_TLS)
    monitor = rendered.one("ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    service = rendered.one("Service", FULLNAME)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert service["spec"]["ports"][0]["name"] == "http"
    assert render(MINIMAL).get("ServiceMonitor") is None


def test_keda_scales_on_consumer_lag(render: Callable[..., Rendered]) -> None:
    rendered = render(KEDA)
    values = _load_yaml(KEDA)
    kafka = rendered.config["kafka"]
    scaled = rendered.one("ScaledObject", FULLNAME)
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": rendered.workload["kind"],
        "name": FULLNAME,
    }
    assert spec["minReplicaCount"] == values["keda"]["minReplicaCount"]
    assert spec["maxReplicaCount"] == values["keda"]["maxReplicaCount"]
    assert spec["advanced"] == values["keda"]["advanced"]
    triggers = spec["triggers"]
    trigger = triggers[0]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
    assert meta["bootstrapServers"] == kafka["bootstrap_servers"]
    assert meta["consumerGroup"] == kafka["app_id"]
    assert meta["topic"] == kafka["source_topic"]
    assert meta["lagThreshold"] == str(values["keda"]["lagThreshold"])
    assert meta["allowIdleConsumers"] == "false"
    # one more trigger per integration, on its internal topic, all with the same authentication
    assert [t["metadata"]["topic"] for t in triggers[1:]] == [
        delivery_topic(kafka["app_id"], i["id"]) for i in values["integrations"]
    ]
    assert all(t["authenticationRef"] == trigger["authenticationRef"] for t in triggers)
    # autoscaled: the Deployment leaves replicas to KEDA's HPA, and the chart makes no HPA itself
    assert "replicas" not in rendered.workload["spec"]
    assert rendered.get("HorizontalPodAutoscaler") is None

    auth = rendered.one("TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"sasl", "tls", "username", "password"}
    resolved = {parameter: rendered.secret_data(ref["name"])[ref["key"]] for parameter, ref in refs.items()}
    assert resolved == {
        "sasl": "scram_sha256",
        "tls": "enable",
        "username": kafka["sasl_username"],
        "password": values["credentials"]["kafkaSaslPassword"],
    }


def test_keda_with_private_ca_and_plaintext(render: Callable[..., Rendered]) -> None:
    with_ca = render(SASL_TLS, "--set", "keda.enabled=true")
    refs = {r["parameter"]: r for r in with_ca.one("TriggerAuthentication")["spec"]["secretTargetRef"]}
    assert refs["ca"] == {"parameter": "ca", "name": "events-cluster-ca-cert", "key": "ca.crt"}
    assert with_ca.secret_data(refs["sasl"]["name"])["sasl"] == "scram_sha512"

    plain = render(MINIMAL, "--set", "keda.enabled=true")
    triggers = plain.one("ScaledObject")["spec"]["triggers"]
    assert len(triggers) == 3
    assert not any("authenticationRef" in trigger for trigger in triggers)
    assert plain.get("TriggerAuthentication") is None


def test_keda_watches_every_internal_delivery_topic(render: Callable[..., Rendered]) -> None:
    """A slow destination's backlog waits in its internal topic: without a trigger there KEDA
    would neither scale out for it nor stay active, and minReplicaCount 0 could scale to zero
    with deliveries pending."""
    rendered = render(
        MINIMAL,
        "--set",
        "keda.enabled=true",
        "--set",
        "keda.minReplicaCount=0",
        "--set",
        "config.kafka.app_id=shop-sync",
        "--set",
        "keda.deliveryLagThreshold=7",
        "--set",
        "keda.deliveryActivationLagThreshold=2",
    )
    values = _load_yaml(MINIMAL)
    spec = rendered.one("ScaledObject", FULLNAME)["spec"]
    assert spec["minReplicaCount"] == 0
    by_topic = {t["metadata"]["topic"]: t for t in spec["triggers"]}
    wanted = {"signal.events"} | {delivery_topic("shop-sync", i["id"]) for i in values["integrations"]}
    assert set(by_topic) == wanted and len(spec["triggers"]) == len(wanted)
    # the names the chart computes are the ones the worker creates
    settings = load_settings_from_rendered(rendered)
    assert {delivery_topic(settings.kafka.app_id, i.id) for i in settings.integrations} == wanted - {
        "signal.events"
    }
    names = [t.get("name") for t in spec["triggers"]]
    assert len(set(names)) == len(names) and all(names), "trigger names are set and unique"
    for topic, trigger in by_topic.items():
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == "shop-sync", "Faust's group (the app id) reads every topic"
        assert meta["allowIdleConsumers"] == "false"
        assert meta["offsetResetPolicy"] == "earliest"
        if topic == "signal.events":
            assert (meta["lagThreshold"], meta["activationLagThreshold"]) == ("100", "0")
        else:
            assert (meta["lagThreshold"], meta["activationLagThreshold"]) == ("7", "2")


def load_settings_from_rendered(rendered: Rendered) -> Any:
    """The rendered worker config as the worker reads it, secrets replaced by placeholders."""
    config = rendered.config
    for integration in config["integrations"]:
        for field in ("api_password_file", "api_key_file"):
            if field in integration:
                del integration[field]
                integration[field.removesuffix("_file")] = "placeholder-secret"
    config["worker"]["state_dir"] = "/nonexistent"
    from signal_sync.config import Settings

    return Settings(**config)


# ---------------------------------------------------------------------- rejected values


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        pytest.param(
            ["--set", "integrations[0].base_url=https://mautic.example.com/"],
            "/integrations/0/base_url",
            id="base-url-trailing-slash",
        ),
        pytest.param(
            ["--set", "integrations[0].base_url=https://mautic.example.com/api"],
            "/integrations/0/base_url",
            id="base-url-with-path",
        ),
        pytest.param(
            ["--set", "integrations[0].base_url=https://signal:hunter2@mautic.example.com"],
            "/integrations/0/base_url",
            id="base-url-with-credentials",
        ),
        pytest.param(
            ["--set", "config.debugger.enabled=true"], "debugger", id="chart-managed-debugger-section"
        ),
        pytest.param(
            ["--set", "prometheusRule.failedRatio.ratio=2"],
            "/prometheusRule/failedRatio/ratio",
            id="failed-ratio-above-one",
        ),
        pytest.param(
            ["--set", "prometheusRule.lagGrowing.window=15 minutes"],
            "/prometheusRule/lagGrowing/window",
            id="alert-window-not-a-duration",
        ),
        pytest.param(
            ["--set-json", 'networkPolicy.ingressFrom=[{"namespace":"monitoring"}]'],
            "namespace",
            id="network-policy-peer-typo",
        ),
        pytest.param(
            ["--set", "integrations[0].base_url=http://mautic.example.com"],
            "/integrations/0/base_url",
            id="base-url-plain-http",
        ),
        pytest.param(
            ["--set", "integrations[1].base_url=https://api.mailgun.com"],
            "/integrations/1/base_url",
            id="mailgun-wrong-host",
        ),
        pytest.param(
            [
                "--set-json",
                'integrations=[{"type":"mautic","base_url":"https://m.example.com","api_user":"u"}]',
            ],
            "missing property 'id'",
            id="integration-without-id",
        ),
        pytest.param(
            ["--set", "integrations[0].id=bad id!"], "/integrations/0/id", id="integration-id-chars"
        ),
        pytest.param(
            ["--set", "integrations[0].type=hubspot"], "/integrations/0/type", id="unknown-integration-type"
        ),
        pytest.param(
            ["--set", "integrations[0].api_password=hunter2-plaintext"],
            "/integrations/0/api_password",
            id="inline-secret",
        ),
        pytest.param(
            ["--set", "integrations[1].list_address=not-an-address"],
            "/integrations/1/list_address",
            id="mailgun-list-address",
        ),
        pytest.param(["--set", "integrations[0].apiUser=typo"], "apiUser", id="unknown-integration-field"),
        pytest.param(["--set", "replicaCount=-1"], "/replicaCount", id="negative-replicas"),
        pytest.param(["--set", "replicas=2"], "replicas", id="unknown-top-level-key"),
        pytest.param(["--set", "config.worker.web_bind=127.0.0.1"], "web_bind", id="chart-managed-web-bind"),
        pytest.param(
            ["--set", "config.kafka.ssl_ca_file=/ca.pem"], "ssl_ca_file", id="chart-managed-ca-file"
        ),
        pytest.param(
            ["--set", "config.kafka.security_protocol=SASL_SSL"], "sasl_username", id="sasl-without-username"
        ),
        pytest.param(
            ["--set", "config.kafka.security_protocol=TLS"],
            "/config/kafka/security_protocol",
            id="unknown-security-protocol",
        ),
        pytest.param(["--set", "config.worker.web_port=80"], "/config/worker/web_port", id="privileged-port"),
        pytest.param(
            ["--set", "config.kafka.client_config.sasl\\.password=x"],
            "invalid propertyName 'sasl.password'",
            id="passthrough-of-an-owned-property",
        ),
        pytest.param(
            [
                "--set",
                "config.kafka.security_protocol=SASL_SSL",
                "--set",
                "config.kafka.sasl_mechanism=OAUTHBEARER",
            ],
            "sasl_oauthbearer_token_endpoint_url",
            id="oauthbearer-without-endpoint",
        ),
        pytest.param(
            ["--set", "config.kafka.sasl_oauthbearer_client_secret=inline-secret-value"],
            "/config/kafka/sasl_oauthbearer_client_secret",
            id="inline-oauth-secret",
        ),
        pytest.param(
            ["--set", "config.kafka.sasl_oauthbearer_token_endpoint_url=http://idp.example.com/token"],
            "/config/kafka/sasl_oauthbearer_token_endpoint_url",
            id="oauth-endpoint-plain-http",
        ),
        pytest.param(
            ["--set", "config.kafka.ssl_certificate_file=/c.pem"],
            "ssl_certificate_file",
            id="chart-managed-client-certificate",
        ),
        pytest.param(
            ["--set", "config.kafka.source_topic=bad topic"],
            "/config/kafka/source_topic",
            id="bad-topic-name",
        ),
        pytest.param(
            ["--set", "keda.enabled=true", "--set", "keda.lagThreshold=0"],
            "/keda/lagThreshold",
            id="keda-lag-threshold",
        ),
        pytest.param(
            ["--set", "credentials.integrations.mailgun-news="],
            "/credentials/integrations/mailgun-news",
            id="empty-credential",
        ),
        pytest.param(
            ["--set", "integrations[0].on_consent_withdrawn=ignore"],
            "/integrations/0",
            id="unknown-withdrawal-policy",
        ),
        pytest.param(
            ["--set", "integrations[1].unsubscribe_domain=newsletter@mg.example.com"],
            "/integrations/1",
            id="unsubscribe-domain-not-a-domain",
        ),
        pytest.param(
            ["--set", "integrations[0].mapping.tags=traits.segment"],
            "/integrations/0",
            id="mapping-onto-an-owned-field",
        ),
        pytest.param(
            ["--set", "integrations[1].mapping.plan=traits.plan"],
            "/integrations/1",
            id="mailgun-mapping-outside-name-and-vars",
        ),
        pytest.param(
            ["--set-json", 'integrations[1].mapping={"vars.plan": 5}'],
            "/integrations/1",
            id="mapping-source-not-a-path-or-constant",
        ),
        pytest.param(
            ["--set-json", 'integrations[0].segments={"page": 0}'],
            "/integrations/0",
            id="segment-id-not-positive",
        ),
        pytest.param(
            ["--set-json", 'integrations[1].segments={"*": 1}'],
            "/integrations/1",
            id="mailgun-has-no-segments",
        ),
        pytest.param(
            ["--set-json", 'integrations[0].events={"Order Completed": {"fields": {}}}'],
            "/integrations/0",
            id="events-block-with-an-unknown-key",
        ),
        pytest.param(
            ["--set", "config.outcomes.contact_id_key=the-key-itself-0123456789abcdef0123"],
            "/config/outcomes/contact_id_key",
            id="contact-id-key-in-the-configmap",
        ),
    ],
)
def test_schema_rejects_bad_values(helm: Helm, extra: list[str], where: str) -> None:
    stderr = _expect_failure(helm, MINIMAL, *extra)
    assert SCHEMA_ERROR in stderr
    assert where in stderr


@pytest.mark.parametrize(
    ("values", "extra", "message"),
    [
        pytest.param(
            MINIMAL,
            ["--set", "integrations[1].id=mautic-main"],
            'duplicate integration id "mautic-main"',
            id="duplicate-id",
        ),
        pytest.param(
            MINIMAL,
            ["--set", "integrations[1].id=mailgun-other"],
            "credentials.integrations.mailgun-other: missing the api_key",
            id="missing-credential",
        ),
        pytest.param(
            KEDA,
            ["--set", "credentials.kafkaSaslPassword="],
            "credentials.kafkaSaslPassword",
            id="missing-kafka-password",
        ),
        pytest.param(
            MINIMAL,
            ["--set", "terminationGracePeriodSeconds=20"],
            "terminationGracePeriodSeconds",
            id="grace-below-worker-grace",
        ),
        pytest.param(
            SASL_TLS,
            ["--set", "config.worker.shutdown_grace_s=60"],
            "terminationGracePeriodSeconds",
            id="worker-grace-above-pod-grace",
        ),
        pytest.param(KEDA, ["--set", "autoscaling.enabled=true"], "exclusive", id="hpa-and-keda"),
        pytest.param(
            MINIMAL,
            ["--set", "kafkaTls.caSecret.name=ca"],
            "only used with SSL or SASL_SSL",
            id="ca-without-tls",
        ),
        pytest.param(
            KEDA,
            ["--set", "config.kafka.bootstrap_servers=${KAFKA}"],
            "keda.bootstrapServers",
            id="keda-env-bootstrap",
        ),
        pytest.param(
            MINIMAL,
            ["--set", "kafkaTls.clientCertSecret.name=client"],
            "a client certificate is only used with SSL or SASL_SSL",
            id="client-certificate-without-tls",
        ),
        pytest.param(
            OAUTHBEARER,
            ["--set", "credentials.kafkaOauthClientSecret="],
            "credentials.kafkaOauthClientSecret",
            id="missing-oauth-client-secret",
        ),
        pytest.param(
            OAUTHBEARER,
            ["--set", "config.kafka.sasl_oauthbearer_client_secret=${OAUTH_SECRET}"],
            "KEDA reads the Kafka OAUTHBEARER client secret from the credentials Secret",
            id="keda-env-oauth-secret",
        ),
        pytest.param(
            MTLS,
            ["--set", "config.kafka.ssl_key_password=${KEY_PASSWORD}"],
            "both set the key's password",
            id="two-key-passwords",
        ),
        pytest.param(
            MINIMAL,
            ["--set", "integrations[0].id=kafka-oauth-client-secret"],
            'the id "kafka-oauth-client-secret" is reserved',
            id="id-reserved-for-oauth-secret",
        ),
        pytest.param(
            MINIMAL,
            ["--set", "debugger.tokenSecret.name=dbg"],
            "debugger.enabled is false",
            id="debugger-token-without-debugger",
        ),
        pytest.param(
            PRIVACY,
            ["--set", "credentials.contactIdKey=short"],
            "credentials.contactIdKey: missing or shorter than 32 characters",
            id="contact-id-key-too-short",
        ),
        pytest.param(
            PRIVACY,
            ["--set", "config.outcomes.contact_id_key=${CONTACT_ID_KEY}"],
            "keyedContactId and config.outcomes.contact_id_key both set",
            id="two-contact-id-keys",
        ),
        pytest.param(
            PRIVACY,
            ["--set", "integrations[0].id=outcomes-contact-id-key"],
            'the id "outcomes-contact-id-key" is reserved',
            id="id-reserved-for-contact-id-key",
        ),
    ],
)
def test_template_rejects_inconsistent_values(
    helm: Helm, values: Path, extra: list[str], message: str
) -> None:
    assert message in _expect_failure(helm, values, *extra)


def test_keyed_contact_id_key_comes_from_the_credentials_secret_as_a_file(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    rendered = render(PRIVACY)
    values = _load_yaml(PRIVACY)
    key = values["credentials"]["contactIdKey"]
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    outcomes = rendered.config["outcomes"]
    assert outcomes == {
        "contact_id_key_file": f"{mounts['credentials']['mountPath']}/outcomes-contact-id-key"
    }
    assert rendered.secret_data(FULLNAME)["outcomes-contact-id-key"] == key
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    assert (
        settings.outcomes.contact_id_key is not None
        and settings.outcomes.contact_id_key.get_secret_value() == key
    )
    mautic, mailgun = settings.integrations
    assert (mautic.on_consent_withdrawn, mailgun.on_consent_withdrawn) == ("propagate", "propagate")
    assert mailgun.unsubscribe_domain == "mg.example.com"  # type: ignore[union-attr]
    existing = render(PRIVACY, "--set", "credentials.existingSecret=my-creds")
    volume = next(v for v in existing.pod["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == "my-creds"
    assert {"key": "outcomes-contact-id-key", "path": "outcomes-contact-id-key"} in volume["secret"]["items"]
    plain = render(MINIMAL)
    assert "contact_id_key_file" not in (plain.config.get("outcomes") or {})


def test_env_reference_secrets_need_no_chart_secret(render: Callable[..., Rendered]) -> None:
    rendered = render(
        MINIMAL,
        "--set-json",
        'integrations=[{"id":"m","type":"mautic","base_url":"https://m.example.com","api_user":"u",'
        '"api_password":"${MAUTIC_PASSWORD}"}]',
        "--set-json",
        "credentials.integrations={}",
    )
    assert rendered.get("Secret") is None
    assert "credentials" not in {v["name"] for v in rendered.pod["volumes"]}
    assert rendered.config["integrations"][0]["api_password"] == "${MAUTIC_PASSWORD}"


# ---------------------------------------------------------------------------- docs


@ci_values
def test_notes_render(helm: Helm, values: Path, tmp_path: Path) -> None:
    """NOTES.txt is not part of `helm template`; render it through a test-only template."""
    chart = tmp_path / "signal-sync"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}\n',
        encoding="utf-8",
    )
    out = helm.run(
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--values",
        str(values),
        "--show-only",
        "templates/zz-notes-test.yaml",
        chart=chart,
    )
    notes = yaml.safe_load(out)["data"]["notes"]
    persistent = (_load_yaml(values).get("persistence") or {}).get("enabled", True)
    assert f"rollout status {'statefulset' if persistent else 'deployment'}/{FULLNAME}" in notes
    assert "/debugger" in notes
    for integration in _load_yaml(values)["integrations"]:
        assert integration["id"] in notes
    for secret in _credential_values(values):
        assert secret not in notes


# Passed to Kubernetes as they are: documented as a whole, not leaf by leaf.
OPAQUE_VALUES = {
    "strategy",
    "podSecurityContext",
    "securityContext",
    "resources",
    "tests.connection.resources",
}


def _leaf_paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict) and value and prefix not in OPAQUE_VALUES:
        for key, child in value.items():
            yield from _leaf_paths(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    missing = [p for p in _leaf_paths(_load_yaml(CHART / "values.yaml")) if f"`{p}`" not in readme]
    assert not missing, f"values without a row in the README's values table: {missing}"


CHART_TEXTS = (
    CHART / "values.yaml",
    CHART / "README.md",
    CHART / "templates" / "NOTES.txt",
    REPO_ROOT / "docs" / "operations.md",
)


def test_chart_texts_agree_with_readiness() -> None:
    """The worker reports a pod without partitions as ready (tests/unit/test_observability_health.py);
    no chart text may claim otherwise, nor tie readiness to destination faults."""
    for path in CHART_TEXTS:
        text = " ".join(path.read_text(encoding="utf-8").split()).lower()
        for claim in ("never turn ready", "never turns ready", "is never ready", "never ready"):
            assert claim not in text, f"{path.name} says a pod without partitions {claim!r}"
        assert "no integration in a config-level fault" not in text, path.name


# ------------------------------------------------------------------- the event debugger


@ci_values
def test_debugger_is_off_unless_enabled(render: Callable[..., Rendered], values: Path) -> None:
    rendered = render(values)
    enabled = bool((_load_yaml(values).get("debugger") or {}).get("enabled"))
    debugger = rendered.config["debugger"]
    assert debugger["enabled"] is enabled
    assert debugger["show_personal_data"] is False
    if not enabled:
        assert "debugger-token" not in {v["name"] for v in rendered.pod["volumes"]}
        assert "token_file" not in debugger


def test_debugger_off_by_default() -> None:
    values = _load_yaml(CHART / "values.yaml")
    assert values["debugger"]["enabled"] is False
    assert values["debugger"]["show_personal_data"] is False
    assert DebuggerSettings().enabled is False, "the worker's own default is off too"


def test_debugger_token_comes_from_its_secret_as_a_file(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    rendered = render(EXPOSURE)
    values = _load_yaml(EXPOSURE)["debugger"]
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    token = volumes["debugger-token"]["secret"]
    assert token["secretName"] == values["tokenSecret"]["name"]
    assert token["items"] == [{"key": values["tokenSecret"]["key"], "path": "token"}]
    assert mounts["debugger-token"]["readOnly"] is True
    debugger = rendered.config["debugger"]
    assert debugger == {
        "enabled": True,
        "show_personal_data": False,
        "token_file": f"{mounts['debugger-token']['mountPath']}/token",
    }
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, rendered.pod, rendered.container)
    assert settings.debugger.enabled and settings.debugger.token is not None
    shown = render(EXPOSURE, "--set", "debugger.show_personal_data=true").config["debugger"]
    assert shown["show_personal_data"] is True


# ------------------------------------------------------------------------ NetworkPolicy


def test_network_policy_admits_only_the_named_peers_to_the_web_port(render: Callable[..., Rendered]) -> None:
    assert render(MINIMAL).get("NetworkPolicy") is None
    rendered = render(EXPOSURE)
    values = _load_yaml(EXPOSURE)["networkPolicy"]
    policy = rendered.one("NetworkPolicy", FULLNAME)["spec"]
    assert policy["podSelector"]["matchLabels"] == rendered.workload["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == values["ingressFrom"]
    (http,) = [p for p in rendered.container["ports"] if p["name"] == "http"]
    assert rule["ports"] == [{"port": http["containerPort"], "protocol": "TCP"}]
    # the helm test Pod is not a worker: the policy, the Service and the PDB do not select it
    test_labels = rendered.test_pod["metadata"]["labels"]
    assert not policy["podSelector"]["matchLabels"].items() <= test_labels.items()

    closed = render(EXPOSURE, "--set-json", "networkPolicy.ingressFrom=[]")
    assert closed.one("NetworkPolicy", FULLNAME)["spec"]["ingress"] == [], "no peer named: no ingress"


# ---------------------------------------------------------------------- PrometheusRule

DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
NONEMPTY_DURATION = {"type": "string", "minLength": 1, "pattern": DURATION}
# The fields of monitoring.coreos.com/v1 PrometheusRule (its CRD's openAPIV3Schema), strict:
# an unknown field, a wrong type or a bad duration fails, as the API server would reject it.
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": STRING_MAP},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "labels": STRING_MAP,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "query_offset": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "keep_firing_for": {
                                            "type": "string",
                                            "minLength": 1,
                                            "pattern": DURATION,
                                        },
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
# Labels Prometheus adds to every scraped series (the ServiceMonitor's target labels).
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "endpoint", "container"}
ALERTS = {
    "integrationPaused": "SignalSyncIntegrationPaused",
    "integrationFault": "SignalSyncIntegrationFault",
    "deadLetters": "SignalSyncDeadLetters",
    "failedRatio": "SignalSyncFailedOutcomeRatio",
    "lagGrowing": "SignalSyncConsumerLagGrowing",
    "noOutcomes": "SignalSyncNoOutcomes",
}


def exported_series() -> dict[str, set[str]]:
    """Every series name the worker exports (``_total``, ``_bucket``, ... included) → its labels."""
    metrics = Metrics(["mautic-main"])
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels)
        names = {family.name, *(sample.name for sample in family.samples)}
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        if family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum", "created")}
            labels.add("le")
        for name in names:
            series.setdefault(name, set()).update(labels)
    # label sets of series that have no sample yet
    known = {
        "signal_sync_outcomes_total": {"integration", "status", "reason"},
        "signal_sync_dead_letters_total": {"integration", "reason"},
        "signal_sync_consumer_lag": {"topic", "partition"},
        "signal_sync_events_consumed_total": {"topic"},
    }
    for name, labels in known.items():
        assert name in series, name
        series[name] |= labels
    return series


def promql_references(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """(metric name, matcher labels) of every selector, and every label named by a grouping."""
    import promql_parser

    selectors: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            selectors.append((node.name, {m.name for m in node.matchers.matchers}))
        elif kind == "AggregateExpr" and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif kind == "BinaryExpr" and node.modifier is not None and node.modifier.matching is not None:
            grouping.update(node.modifier.matching.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, grouping


@pytest.fixture(scope="session")
def jsonschema_module() -> Any:
    import jsonschema

    return jsonschema


def test_prometheus_rule_is_off_by_default(render: Callable[..., Rendered]) -> None:
    assert _load_yaml(CHART / "values.yaml")["prometheusRule"]["enabled"] is False
    assert render(MINIMAL).get("PrometheusRule") is None


def test_prometheus_rule_matches_the_crd_and_the_worker_metrics(
    render: Callable[..., Rendered], jsonschema_module: Any
) -> None:
    rendered = render(EXPOSURE)
    values = _load_yaml(EXPOSURE)["prometheusRule"]
    rule = rendered.one("PrometheusRule", FULLNAME)
    jsonschema_module.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert rule["metadata"]["labels"]["release"] == values["labels"]["release"]
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == set(ALERTS.values())
    series = exported_series()
    for name, alert in alerts.items():
        selectors, grouping = promql_references(alert["expr"])
        assert selectors, name
        for metric, labels in selectors:
            assert metric in series, f"{name}: the worker exports no {metric}"
            unknown = labels - series[metric] - TARGET_LABELS
            assert not unknown, f"{name}: {metric} has no label {unknown}"
            assert {"namespace", "service"} <= labels, f"{name}: {metric} is not scoped to this release"
        assert grouping, f"{name}: aggregate by labels"
        known = set().union(*(series[m] for m, _ in selectors)) | TARGET_LABELS
        assert grouping <= known, f"{name}: grouping by labels no selected series has: {grouping - known}"
        used = set(re.findall(r"\$labels\.(\w+)", json.dumps(alert["annotations"])))
        assert used <= grouping, f"{name}: annotations use labels the expression drops: {used - grouping}"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["labels"]["team"] == "data-platform"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    assert "> 0.1" in alerts["SignalSyncFailedOutcomeRatio"]["expr"], "failedRatio.ratio is used"


@pytest.mark.parametrize("key", sorted(ALERTS))
def test_each_alert_can_be_turned_off(render: Callable[..., Rendered], key: str) -> None:
    rendered = render(EXPOSURE, "--set", f"prometheusRule.{key}.enabled=false")
    (group,) = rendered.one("PrometheusRule", FULLNAME)["spec"]["groups"]
    assert {r["alert"] for r in group["rules"]} == set(ALERTS.values()) - {ALERTS[key]}


def test_prometheus_rule_selector_can_be_replaced(render: Callable[..., Rendered]) -> None:
    rendered = render(EXPOSURE, "--set", 'prometheusRule.selector=job="signal-sync"')
    (group,) = rendered.one("PrometheusRule", FULLNAME)["spec"]["groups"]
    for alert in group["rules"]:
        for _metric, labels in promql_references(alert["expr"])[0]:
            assert "job" in labels and "service" not in labels, alert["alert"]


# ------------------------------------------------------------------------- helm test hook


@ci_values
def test_helm_test_pod_runs_test_connection_with_the_worker_files(
    render: Callable[..., Rendered], values: Path, tmp_path: Path
) -> None:
    rendered = render(values)
    pod = rendered.test_pod
    assert pod is not None, "a Pod with the helm.sh/hook: test annotation"
    assert (
        pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    )
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"] == ["signal-sync"]
    assert container["args"] == ["test-connection", "-c", CONFIG_PATH]
    assert container["image"] == rendered.container["image"]
    assert container["securityContext"] == rendered.container["securityContext"]
    assert spec["securityContext"] == rendered.pod["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    # the same mounts and env as the worker: the same config, credentials and CA resolve
    assert container["volumeMounts"] == rendered.container["volumeMounts"]
    # the worker's volumes, but the state folder: an emptyDir (the test pod keeps no state)
    state = {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}
    assert spec["volumes"] == [v if v["name"] != "state" else state for v in rendered.pod["volumes"]]
    assert container["env"] == rendered.container["env"]
    settings, _ = _load_config_as_pod_sees_it(rendered, tmp_path, spec, container)
    worker, _ = _load_config_as_pod_sees_it(rendered, tmp_path / "worker", rendered.pod, rendered.container)
    assert [i.secret() for i in settings.integrations] == [i.secret() for i in worker.integrations]
    selector = rendered.workload["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items(), "not counted as a worker"

    assert render(values, "--set", "tests.connection.enabled=false").test_pod is None
