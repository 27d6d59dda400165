"""The files for Docker/Prometheus/Grafana users stay true to the code, though CI runs none."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from churnstream.observability.runtime import instrument_producer, instrument_scorer
from churnstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    settings = Settings()
    names: set[str] = set()
    for registry in (
        instrument_scorer(settings, metadata=None).registry,
        instrument_producer(settings).registry,
    ):
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    return names


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "grafana-dashboard.json").read_text())
    queried = set(re.findall(r"churnstream_[a-z_]+", json.dumps(dashboard)))
    assert queried, "the dashboard queries nothing"
    exported = exported_names()
    # histograms and labelled counters may have no sample until observed: compare families
    families = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in exported}
    missing = {q for q in queried if re.sub(r"_(bucket|count|sum|total)$", "", q) not in families}
    assert not missing, f"dashboard queries unknown metrics: {sorted(missing)}"


def test_prometheus_scrapes_the_documented_ports() -> None:
    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert {t.rsplit(":", 1)[1] for t in targets} == {"9108", "9109"}
    operating = (REPO / "docs" / "operating.md").read_text()
    assert "--metrics-port 9108" in operating and "--metrics-port 9109" in operating


def test_compose_file_is_valid_yaml_with_redpanda() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert "redpanda" in compose["services"]
    assert "19092:19092" in compose["services"]["redpanda"]["ports"]


# --- compose.yaml: the whole pipeline for Docker users (CI has no Docker engine) -------------

CHURNSTREAM_IMAGE = "churnstream:local"
PIPELINE_SERVICES = {"init", "topics", "producer", "scorer", "dashboard"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def churnstream_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {name: s for name, s in services.items() if s.get("image") == CHURNSTREAM_IMAGE}


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a churnstream command line exactly as the CLI would, without running it."""
    import typer.main

    from churnstream.cli import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context("churnstream", list(args))
    while hasattr(command, "resolve_command"):  # a group: descend into the sub-command
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx.command_path, ctx.params


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """{container path: host path} of a service's ``./host:/container[:ro]`` volumes."""
    mounts = {}
    for volume in service["volumes"]:
        host, container = volume.split(":")[:2]
        assert (REPO / host).exists(), volume
        mounts[container] = host
    return mounts


def service_command_lines(service: dict[str, Any]) -> list[list[str]]:
    """The churnstream command lines a service runs (through its shell, if it has one)."""
    command = service["command"]
    if service.get("entrypoint") == ["sh", "-c"]:
        script = command[0].replace("$$", "$")
        return [shlex.split(m) for m in re.findall(r"churnstream ([a-z][a-z \-]*[a-z])", script)]
    return [list(command)]


def test_compose_has_the_pipeline_on_one_image_and_one_volume() -> None:
    services = compose()["services"]
    assert {"redpanda", "console", "prometheus", "grafana"} <= set(services)
    ours = churnstream_services()
    assert set(ours) == PIPELINE_SERVICES
    for name, service in ours.items():
        env = service["environment"]
        assert env["CHURNSTREAM_KAFKA__BOOTSTRAP_SERVERS"] == "redpanda:9092", name
        assert env["CHURNSTREAM_OBSERVABILITY__METRICS_HOST"] == "0.0.0.0", name  # noqa: S104
        assert service["volumes"] == ["churnstream-data:/data"], name
        assert service["build"] == "."
    assert "churnstream-data" in compose()["volumes"]
    assert "9092" in " ".join(services["redpanda"]["command"])


def test_compose_commands_are_valid_churnstream_command_lines() -> None:
    seen: dict[str, dict[str, Any]] = {}
    for name, service in churnstream_services().items():
        for line in service_command_lines(service):
            path, params = parse_cli(line)
            seen[f"{name}: {path}"] = params
    assert set(seen) == {
        "init: churnstream data fetch",
        "init: churnstream train",
        "topics: churnstream topics create",
        "producer: churnstream produce",
        "scorer: churnstream consume",
        "dashboard: churnstream dashboard",
    }
    assert seen["producer: churnstream produce"]["mode"] == "streaming"
    assert seen["scorer: churnstream consume"]["mode"] == "streaming"
    assert seen["scorer: churnstream consume"]["metrics_port"] == 9108
    assert seen["producer: churnstream produce"]["metrics_port"] == 9109
    assert seen["dashboard: churnstream dashboard"]["metrics_url"] == "http://scorer:9108/metrics"
    assert seen["dashboard: churnstream dashboard"]["port"] == 8050
    assert "8050:8050" in churnstream_services()["dashboard"]["ports"]
    # init trains only when the volume holds no model yet
    assert "if [ -f models/latest ]" in churnstream_services()["init"]["command"][0]


def test_compose_runs_setup_once_before_the_long_running_services() -> None:
    services = compose()["services"]
    done = {"condition": "service_completed_successfully"}
    for name in ("producer", "scorer"):
        assert services[name]["depends_on"] == {"init": done, "topics": done}, name
        assert services[name]["restart"] == "unless-stopped"
    assert services["topics"]["depends_on"] == {"redpanda": {"condition": "service_healthy"}}
    assert services["dashboard"]["depends_on"]["topics"] == done
    for name in ("init", "topics"):
        assert services[name]["restart"] == "no"


def test_compose_prometheus_scrapes_the_services_by_name() -> None:
    mounted = bind_mounts(compose()["services"]["prometheus"])
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    config_file = REPO / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    targets = {
        job["job_name"]: t
        for job in config["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    assert targets == {"churnstream-scorer": "scorer:9108", "churnstream-producer": "producer:9109"}
    # the same job names as the root prometheus.yml (for a host Prometheus), which stays as is
    root = yaml.safe_load((REPO / "prometheus.yml").read_text())
    assert {job["job_name"] for job in root["scrape_configs"]} == set(targets)


def test_grafana_is_provisioned_with_the_datasource_and_the_repo_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert mounts["/etc/churnstream/grafana-dashboard.json"] == "./grafana-dashboard.json"
    provisioning = REPO / "deploy/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/churnstream.yml").read_text())
    (dashboards,) = provider["providers"]
    folder = dashboards["options"]["path"]

    # The start-up script rewrites the import placeholder to the provisioned uid, into the
    # provider's folder: run that very sed (after compose's $$ -> $) on the real dashboard.
    script = grafana["command"][0].replace("$$", "$")
    sed = re.search(r"sed '([^']+)' /etc/churnstream/grafana-dashboard.json\s+> (\S+)", script)
    assert sed, script
    assert Path(sed.group(2)).parent == Path(folder)
    assert "exec /run.sh" in script
    if shutil.which("sed") is None:
        pytest.skip("no sed here to run the substitution")
    out = subprocess.run(
        ["sed", sed.group(1), str(REPO / "grafana-dashboard.json")],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    dashboard = json.loads(out)
    uids = {
        panel["datasource"]["uid"]
        for panel in dashboard["panels"]
        if isinstance(panel.get("datasource"), dict)
    }
    assert uids == {source["uid"]}
    assert "${DS_PROMETHEUS}" not in out


def test_dockerfile_runs_churnstream_as_a_user_from_constrained_installs() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs and all("--constraint constraints.txt" in line for line in installs)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(f"USER {users[-1]}") < lines.index('ENTRYPOINT ["churnstream"]')
    workdirs = [line.split()[1] for line in lines if line.startswith("WORKDIR ")]
    assert workdirs[-1] == "/data"  # the volume compose mounts
    # Everything COPY needs is let through the allow-list .dockerignore.
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for line in lines:
        if line.startswith("COPY "):
            sources = line.split()[1:-1]
            assert set(sources) <= allowed, line
            assert all((REPO / s).exists() for s in sources), line


def _compose_cli() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    return None


def test_compose_file_passes_docker_compose_config() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` here")
    result = subprocess.run(
        [*cli, "-f", str(REPO / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
