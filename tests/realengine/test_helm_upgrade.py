"""The chart's release after its life on the nodes (test_helm_cluster installed it,
test_self_healing drained and lost nodes under it; conftest runs the three in that order on
one release): `helm upgrade` keeps every Secret, claim and row and rolls only what a changed
value touches; `helm uninstall` keeps every claim and its namespace; then the B2B example
installs against a PostgreSQL outside the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exports.helm.values import key as values_key
from tests.conftest import resolved
from tests.realengine.conftest import (
    MARKER_DATABASE,
    NEVER_DURING_A_TEST,
    REAL_NODE,
    RELEASE,
    RELEASE_NS,
    WORKLOADS,
    Cluster,
    benchmark,
    clear_cluster,
)
from tests.realengine.pods import exec_in, instance_pods, key, node_of, pods_of, ready
from tests.realengine.release import helm, install, ours

pytestmark = pytest.mark.kube_cluster
ESTATE = resolved("k3s")


def secret_values(cluster: Cluster) -> dict[tuple[str, str], dict[str, str]]:
    return {(s["metadata"]["namespace"], s["metadata"]["name"]): s.get("data") or {}
            for s in ours(cluster, "secrets")}


def claims(cluster: Cluster) -> dict[tuple[str, str], str]:
    return {(c["metadata"]["namespace"], c["metadata"]["name"]): c["metadata"]["uid"]
            for c in cluster.items("pvc", "-A")}


def generations(cluster: Cluster) -> dict[str, int]:
    return {f"{w['kind']}/{w['metadata']['name']}": w["metadata"]["generation"]
            for w in ours(cluster, WORKLOADS)}


def test_upgrade_keeps_secrets_claims_and_data_and_rolls_only_what_changed(
        cluster: Cluster, release: dict[str, Any], chart: Path) -> None:
    secrets, held, before = secret_values(cluster), claims(cluster), generations(cluster)
    assert held
    took = install(cluster, chart, *release["values"], verb="upgrade")
    benchmark(f"helm upgrade --wait (unchanged values): {took:.0f} s")
    assert secret_values(cluster) == secrets
    assert claims(cluster) == held
    assert generations(cluster) == before
    # one changed value rolls only what depends on it, and it really rolls: new pods Ready
    gateway = ESTATE["gateway"]
    install(cluster, chart, *release["values"],
            "--set", "services.gateway.resources.limits.memory=320Mi",
            "--set", "services.gateway.resources.requests.memory=320Mi", verb="upgrade")
    release["changed"].add(gateway.id)
    after = generations(cluster)
    rolled = sorted(k for k in after if after[k] != before.get(k))
    assert rolled == [f"Deployment/{gateway.name}"], rolled
    pod = pods_of(cluster, gateway, RELEASE)[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "320Mi"
    assert secret_values(cluster) == secrets
    # the data written before the upgrades is still there
    pg = pods_of(cluster, ESTATE["postgres"], RELEASE)[0]
    rows = exec_in(cluster, pg, "psql", "-U", "postgres", "-d", MARKER_DATABASE, "-tAc",
                   "SELECT v FROM marker").stdout.split()
    assert rows == ["before-delete"]


def test_uninstall_keeps_every_claim_and_its_namespace(cluster: Cluster,
                                                      release: dict[str, Any]) -> None:
    held = claims(cluster)
    helm(cluster, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    assert set(claims(cluster)) == set(held)
    kept = {n["metadata"]["name"] for n in cluster.items("namespaces")}
    assert {namespace for namespace, _ in held} <= kept


CUSTOMER_DB = "customer-db"  # where the B2B test's "external" PostgreSQL runs


def test_b2b_install_single_namespace_external_postgres_existing_secret(
        cluster: Cluster, node_images: list[str], chart: Path) -> None:
    """ci/b2b-values.yaml for real: a subset of services in one namespace, with every secret
    from the customer's own Secret, against a PostgreSQL outside the chart (the harness's
    PostgreSQL in a namespace of its own, holding the customer's roles and databases): the
    apps log in to it and come up."""
    clear_cluster(cluster)
    values = yaml.safe_load((chart / "ci" / "b2b-values.yaml").read_text())
    namespace = values.get("namespaces", {}).get("name") or RELEASE_NS
    keys = yaml.safe_load((chart / "values.yaml").read_text())["secrets"]
    secret = {k: f"b2b-{k.lower().replace('_', '-')}" for k in keys}
    port = values["services"]["postgres"]["external"]["ports"]["postgres"]
    host = external_postgres(cluster, secret, port,
                             [db for db in ESTATE.databases
                              if values["services"][values_key(db.owner)]["enabled"]])
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("create", "secret", "generic", values["existingSecret"], "-n", namespace,
                    *(f"--from-literal={k}={v}" for k, v in secret.items()))
    # the customer's storage class and database host are theirs; this cluster's are these
    took = install(cluster, chart, "-f", str(chart / "ci" / "b2b-values.yaml"),
                   "--set", "storageClass=local-path",
                   "--set", f"backup.schedule={NEVER_DURING_A_TEST}",
                   "--set", f"services.postgres.external.host={host}")
    benchmark(f"helm install --wait (B2B example, external PostgreSQL): {took:.0f} s")
    deployed = {w["metadata"]["namespace"] for w in ours(cluster, WORKLOADS)}
    assert deployed == {namespace}
    assert not [s for s in ours(cluster, "statefulsets")
                if s["metadata"]["name"] == ESTATE["postgres"].name]
    for pod in instance_pods(cluster, RELEASE):
        assert REAL_NODE.fullmatch(node_of(pod)) and ready(pod), key(pod)
    helm(cluster, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    cluster.kubectl("delete", "namespace", CUSTOMER_DB, "--wait=false")


def external_postgres(cluster: Cluster, secret: dict[str, str], port: int,
                      databases: list[Any]) -> str:
    """The harness's PostgreSQL as a customer's own database server, on `port`, with a role
    and a database for each of `databases` (passwords from `secret`); its cluster DNS name."""
    pg = ESTATE["postgres"]
    cluster.kubectl("delete", "namespace", CUSTOMER_DB, "--ignore-not-found", "--wait=true",
                    timeout=300)
    cluster.kubectl("create", "namespace", CUSTOMER_DB)
    sql = "".join(f"CREATE ROLE {db.name} LOGIN PASSWORD '{secret[db.password_secret]}';\n"
                  f"CREATE DATABASE {db.name} OWNER {db.name};\n" for db in databases)
    labels = {"app": "customer-db"}
    documents = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "init"},
         "data": {"roles.sql": sql}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "postgres", "labels": labels},
         "spec": {"containers": [{
             "name": "postgres", "image": pg.image, "imagePullPolicy": "IfNotPresent",
             "args": ["-p", str(port)],
             "env": [{"name": "POSTGRES_PASSWORD", "value": secret["POSTGRES_PASSWORD"]},
                     {"name": "PGPORT", "value": str(port)}],
             "ports": [{"containerPort": port}],
             "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p",
                                                     str(port)]}, "periodSeconds": 2},
             "volumeMounts": [{"name": "init", "mountPath": "/docker-entrypoint-initdb.d"}]}],
             "volumes": [{"name": "init", "configMap": {"name": "init"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres"},
         "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]}},
    ]
    cluster.kubectl("apply", "-n", CUSTOMER_DB, "-f", "-", input=yaml.safe_dump_all(documents))
    cluster.kubectl("wait", "-n", CUSTOMER_DB, "--for=condition=Ready", "pod/postgres",
                    "--timeout=300s", timeout=330)
    return f"postgres.{CUSTOMER_DB}.svc.cluster.local"
