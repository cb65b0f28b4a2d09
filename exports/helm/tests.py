"""`helm test`: the connection tests a chart user expects, as hook pods the chart ships.

Each test pod goes the way the estate's own traffic goes, so it needs no NetworkPolicy of its
own and opens no path the estate does not have: it carries the selector labels of the service
whose path it checks (a Deployment's ReplicaSet adopts no pod without its pod-template-hash, a
Service routes no traffic to a pod without its named ports).
- every public service answers on its public port through its Service, as the tunnel
  connector reaches it: one pod with the connector's labels, in its namespace, checks each
  installed public service in turn (Helm runs test pods one after another, ~5 s each);
- every database accepts its role: a pod with each database consumer's labels, in its
  namespace, logs in with the password from that service's own Secret (psql of the
  PostgreSQL image), as the service does.
A pod checks everything it was given and then names every check that failed.
"""

from __future__ import annotations

from typing import Any

from catalog.resolve import Database, ResolvedEstate, ResolvedService
from exports.helm.form import HelmForm
from exports.kubernetes import (
    WAIT_RESOURCES,
    Obj,
    labels,
    runtime,
    security,
)

HOOK = {"helm.sh/hook": "test", "helm.sh/hook-delete-policy": "before-hook-creation"}
TRIES, PAUSE = 15, 2  # a new pod's NetworkPolicy paths open a few seconds after it starts


def _retried(check: str, passed: str, failed: str) -> str:
    """The check, tried again for up to TRIES × PAUSE seconds (a NetworkPolicy enforcer
    learns of a new pod within seconds, not before its first packet); `passed` is printed
    when it passed, `failed` added to $failed when it did not."""
    # one line: a YAML string with a line break would be written double-quoted, escaping the
    # quotes of the template expressions inside it
    return (f"n=0; until {check}; do n=$((n + 1)); [ $n -lt {TRIES} ] || break; "
            f"sleep {PAUSE}; done; if [ $n -lt {TRIES} ]; then echo {passed}; "
            f"else failed=\"$failed; {failed}\"; fi; ")


def _script(checks: str) -> str:
    """Checks made by `_retried`, then the verdict: every failed check named."""
    return (f"failed=; {checks}"
            "if [ -n \"$failed\" ]; then echo \"FAILED: ${failed#; }\" >&2; exit 1; fi")


def _pod(name: str, s: ResolvedService, form: HelmForm, image: str, script: str,
         env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A test pod with the labels of service `s` (its paths), restricted like its pods."""
    pod_sc, container_sc = security(runtime(s))
    pod_sc.pop("sysctls", None)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{form.instance}-test-{name}", "namespace": form.namespace(
            s.namespace), "labels": {**labels(s, form), "app.kubernetes.io/component": "test"},
            "annotations": HOOK},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "enableServiceLinks": False, "securityContext": pod_sc,
            "containers": [{"name": "test", "image": image, "imagePullPolicy": form.pull_policy(),
                            "command": ["sh", "-c", script], "env": env or [],
                            "resources": WAIT_RESOURCES,
                            "securityContext": {**container_sc, "readOnlyRootFilesystem": True}}],
        },
    }


def public_check(s: ResolvedService, form: HelmForm) -> str:
    """A shell check that `s` answers on its public port: its health path where the health
    check is HTTP on that port, else any HTTP answer."""
    assert s.public is not None
    port = s.port(s.public.port)
    host, number = form.address(s, port.container)
    url = f"http://{host}:{number}"
    h = s.health
    if h is not None and h.http is not None and h.port == port.name:
        return f"wget -q -O /dev/null -T 10 {url}{h.http}"
    return f"wget -S -O /dev/null -T 10 {url}/ 2>&1 | grep -q 'HTTP/'"


def database_check(db: Database, estate: ResolvedEstate, form: HelmForm
                   ) -> tuple[str, list[dict[str, Any]]]:
    """psql as the database's role with the password its consumer's Secret holds."""
    pg, owner = estate["postgres"], estate[db.owner]
    host, port = form.address(pg, pg.ports[0].container)
    env = [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
        "name": form.secret_name(owner), "key": db.password_secret}}}]
    return (f"psql -w -v ON_ERROR_STOP=1 -h {host} -p {port} -U {db.name} -d "
            f"{'postgres' if db in estate.monitors else db.name} -tAc 'SELECT 1' | grep -qx 1",
            env)


def test_objects(estate: ResolvedEstate, form: HelmForm) -> list[Obj]:
    present = {s.id for s in estate.services}
    out: list[Obj] = []
    if "cloudflared" in present:
        connector = estate["cloudflared"]
        checks = "".join(
            f"{{{{ if {form.condition((('enabled', s.id),))} }}}}"
            f"{_retried(public_check(s, form), f'{s.id} answers', f'{s.id} does not answer')}"
            "{{ end }}"
            for s in estate.services
            if s.public is not None and not s.native and s.id != connector.id)
        pod = _pod("public", connector, form, form.wait_image(), _script(checks))
        out.append(Obj(pod, (("enabled", connector.id),), connector.id))
    if "postgres" in present:
        pg = estate["postgres"]
        for db in (*estate.databases, *estate.monitors):
            owner = estate[db.owner]
            assert db.password_secret in owner.secrets, (owner.id, db.password_secret)
            script, env = database_check(db, estate, form)
            pod = _pod(f"database-{db.name.replace('_', '-')}", owner, form, form.image(pg),
                       _script(_retried(script, f"role {db.name} logs in",
                                                f"role {db.name} cannot log in")), env)
            out.append(Obj(pod, (("enabled", owner.id), ("enabled", pg.id)), owner.id))
    return out
