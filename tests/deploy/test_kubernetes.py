"""The kustomization in deploy/kubernetes agrees with the production config and the image: probes on
the served port, a grace period longer than the drain, config and secrets where the process reads
them, non-root with a read-only root file system."""

from __future__ import annotations

from typing import Any

from .layout import (
    KUBERNETES,
    PRODUCTION,
    ROOT,
    load_all_yaml,
    load_yaml,
    production_config,
    read_env_file,
    required_variables,
)


def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(KUBERNETES / "kustomization.yaml")
    return document


def resources() -> dict[str, dict[str, Any]]:
    """Every resource the kustomization lists, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for document in load_all_yaml(KUBERNETES / name):
            assert document["kind"] not in found, f"two {document['kind']} resources"
            found[document["kind"]] = document
    return found


def generated(kind: str, name: str) -> dict[str, Any]:
    entries = kustomization()[kind]
    matches = [entry for entry in entries if entry["name"] == name]
    assert len(matches) == 1, f"{kind} {name} is not generated exactly once"
    entry: dict[str, Any] = matches[0]
    return entry


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resources()["Deployment"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    found: dict[str, Any] = only
    return found


def test_the_kustomization_lists_a_deployment_service_and_disruption_budget() -> None:
    assert set(resources()) == {"Deployment", "Service", "PodDisruptionBudget"}
    for entry in kustomization()["resources"]:
        assert (KUBERNETES / entry).is_file()


def test_the_mounted_proxy_toml_is_the_production_example() -> None:
    config_map = generated("configMapGenerator", "shmastra-cloud-config")
    assert config_map["files"] == ["proxy.toml"]
    assert (KUBERNETES / "proxy.toml").read_bytes() == PRODUCTION.read_bytes()
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    mounts = {mount["name"]: mount for mount in container()["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == "shmastra-cloud-config"
    assert mounts["config"]["readOnly"] is True
    args = container()["args"]
    assert args[args.index("--config") + 1] == mounts["config"]["mountPath"] + "/proxy.toml"


def deployment_env() -> dict[str, str]:
    """The environment a pod gets: the settings ConfigMap, the Secret (from its example) and ``env``."""
    env: dict[str, str] = {}
    for name in generated("configMapGenerator", "shmastra-cloud-settings")["envs"]:
        env |= read_env_file(KUBERNETES / name)
    env |= read_env_file(KUBERNETES / "secrets.env.example")
    env |= {item["name"]: item["value"] for item in container().get("env", [])}
    return env


def test_every_required_variable_comes_from_the_settings_or_the_secret() -> None:
    settings = generated("configMapGenerator", "shmastra-cloud-settings")
    secrets = generated("secretGenerator", "shmastra-cloud-secrets")
    assert secrets["envs"] == ["secrets.env"]
    secret_values = read_env_file(KUBERNETES / "secrets.env.example")
    env = deployment_env()
    sources = {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container()["envFrom"]}
    assert sources == {"shmastra-cloud-settings", "shmastra-cloud-secrets"}

    assert required_variables() <= set(env), required_variables() - set(env)
    production_config(env)  # interpolates with nothing missing and a valid [server] table
    # secrets stay out of the plain ConfigMap and out of the manifests
    settings_names = {n for f in settings["envs"] for n in read_env_file(KUBERNETES / f)}
    for secret in ("DATABASE_URL", "COOKIE_SECRET", "WORKOS_API_KEY", "E2B_API_KEY", "OPENAI_API_KEY"):
        assert secret in secret_values and secret not in settings_names
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/deploy/kubernetes/secrets.env" in ignored


def test_probes_and_ports_match_the_served_port() -> None:
    server = production_config(deployment_env()).server
    (port,) = container()["ports"]
    assert port == {"name": "http", "containerPort": server.port}
    assert server.host == "0.0.0.0"
    assert container()["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container()["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container()["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = resources()["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"


def test_grace_period_outlasts_the_pre_stop_pause_and_the_drain() -> None:
    server = production_config(deployment_env()).server
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(command[-1].rsplit("sleep(", 1)[1].rstrip(")"))
    assert pod_spec()["terminationGracePeriodSeconds"] > pause + server.shutdown_timeout


def test_selectors_match_the_pods() -> None:
    deployment = resources()["Deployment"]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    for selector in (
        deployment["selector"]["matchLabels"],
        resources()["Service"]["spec"]["selector"],
        resources()["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert deployment["replicas"] >= 2
    assert resources()["PodDisruptionBudget"]["spec"]["maxUnavailable"] < deployment["replicas"]
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_runs_as_the_images_non_root_user_on_a_read_only_root() -> None:
    pod = pod_spec()["securityContext"]
    own = container()["securityContext"]
    assert pod["runAsNonRoot"] is True
    user_line = next(
        line
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("USER ")
    )
    assert user_line == f"USER {pod['runAsUser']}:{pod['runAsGroup']}"
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container()["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place
    assert set(container()["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container()["resources"]["limits"]
