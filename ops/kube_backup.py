"""`manacore backup` and `manacore restore` on a Kubernetes stack (k3s): kubectl against the
stack's kube context, with the backup's own pod templates (exports.kubernetes.cron_job, the
same the stack's CronJobs run).

A backup now is a Job from each of the backup's CronJobs (`kubectl create job --from=…`);
`--init` and `--snapshots` run the servers' template with those arguments. A restore writes
each item from the pod that can: the servers' job the roles, databases and buckets; each
claim's job its claim (read-write now, on the claim's node, as the claim's service's user),
Redis's claim included. First every Job with --dry-run (a non-empty target is refused before
anything stops); then the services the items need stopped are scaled to 0, the restore Jobs
run, the services are scaled back and waited for, and Redis's keys are checked on the running
server. Each Job's output passes through; its exit code is the image's (0 verified, 1 failed
or differs, 2 refused).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from catalog.backup import SERVERS, Item, Plan, backup_service, claim_jobs, plan
from catalog.resolve import ResolvedEstate, ResolvedService
from exports.kubernetes import Concrete, cron_job
from ops.docker_backup import OpsError, Say

WAIT = 1800  # seconds a Job or a rollout may take


class KubeBackup:
    def __init__(self, estate: ResolvedEstate, say: Say = print):
        if estate.target != "kubernetes":
            raise OpsError(f"stack {estate.settings.stack} targets {estate.target}", 2)
        backup = backup_service(estate.services)
        if backup is None:
            raise OpsError(f"stack {estate.settings.stack} runs no backup service", 2)
        self.estate, self.service, self.say = estate, backup, say
        self.plan: Plan = plan(estate.services, estate.databases, estate.settings)
        self.form = Concrete(estate, secret=lambda name: "")  # templates name Secrets only
        self.claims = {c.item: c for c in claim_jobs(estate.services)}
        self.stamp = time.strftime("%Y%m%d%H%M%S")  # this run's Jobs: <verb>-<pod>-<stamp><n>
        self.made = 0

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        context = self.estate.settings.kube_context
        argv = ["kubectl", *(["--context", context] if context else []), *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise OpsError(f"kubectl {' '.join(args[:2])}: {proc.stderr.strip()[-1500:]}")
        return proc

    # --- the Jobs --------------------------------------------------------------------------

    def job(self, item: str | None, args: list[str], writable: bool = False) -> dict[str, Any]:
        """A Job of the backup image: the servers' pod (item None, or an item taken through
        the servers) or the item's claim's pod, running `manacore-backup ARGS`; `writable`
        mounts the claim read-write (a restore)."""
        claim = self.claims.get(item or "")
        job, owner = (claim.job, self.estate[claim.service]) if claim else \
            (self.service, self.service)
        spec = cron_job(job, self.estate, self.form, tuple(args), owner)["spec"]["jobTemplate"]
        template = spec["spec"]["template"]
        if writable:
            pod = template["spec"]
            for v in pod.get("volumes", []):
                v.get("persistentVolumeClaim", {}).pop("readOnly", None)
            for m in pod["containers"][0].get("volumeMounts", []):
                m.pop("readOnly", None)
        self.made += 1
        verb = "dry-run" if "--dry-run" in args else args[0]
        name = f"{verb}-{job.name}"[:63 - len(self.stamp) - 4] + f"-{self.stamp}{self.made}"
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "namespace": job.namespace,
                             "labels": spec["metadata"]["labels"]},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                         "template": template}}

    def run(self, jobs: list[dict[str, Any]]) -> int:
        """Create the Jobs, wait for each to finish, pass their output through; the worst exit
        code (2 refused before 1 failed)."""
        self.kubectl("create", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": jobs}))
        codes = []
        for j in jobs:
            name, ns = j["metadata"]["name"], j["metadata"]["namespace"]
            code = self._exit_code(name, ns)
            out = self.kubectl("logs", "-n", ns, f"job/{name}", check=False).stdout.rstrip()
            for line in out.splitlines():
                self.say(line)
            codes.append(code)
        return 2 if 2 in codes else max(codes, default=0)

    def _exit_code(self, name: str, namespace: str) -> int:
        deadline = time.monotonic() + WAIT
        while True:
            pods = json.loads(self.kubectl("get", "pods", "-n", namespace, "-l",
                                           f"job-name={name}", "-o", "json").stdout)["items"]
            for p in pods:
                for c in p["status"].get("containerStatuses", []):
                    done = c["state"].get("terminated")
                    if done:
                        return int(done["exitCode"])
                waiting = [c["state"]["waiting"] for c in p["status"].get(
                    "containerStatuses", []) if c["state"].get("waiting", {}).get(
                    "reason") in ("ErrImagePull", "ImagePullBackOff",
                                  "CreateContainerConfigError")]
                if waiting:
                    raise OpsError(f"job {namespace}/{name}: {waiting[0].get('reason')}: "
                                   f"{waiting[0].get('message', '')}")
            if time.monotonic() > deadline:
                raise OpsError(f"job {namespace}/{name} did not finish within {WAIT} s")
            time.sleep(1)

    # --- backup ------------------------------------------------------------------------

    def backup(self, *args: str) -> int:
        """`run`: every part now (a Job from each CronJob); `init`, `snapshots`: once, in the
        servers' pod."""
        if args[0] != "run":
            return self.run([self.job(None, list(args))])
        extra = list(args[1:])
        jobs = [self.job(None, [*SERVERS, *extra])] + [
            self.job(c.item, [*c.args, *extra]) for c in self.claims.values() if c.scheduled]
        return self.run(jobs)

    # --- restore -----------------------------------------------------------------------

    def _pods_for(self, items: tuple[Item, ...], args: list[str], writable: bool
                  ) -> list[dict[str, Any]]:
        """One Job for the items the servers' pod writes, one per claim item."""
        served = [i.id for i in items if i.id not in self.claims]
        out = [self.job(None, [args[0], *(a for x in served for a in ("--item", x)),
                               *args[1:]], writable)] if served else []
        return out + [self.job(i.id, [args[0], "--item", i.id, *args[1:]], writable)
                      for i in items if i.id in self.claims]

    def workloads(self, services: list[ResolvedService]) -> dict[str, dict[str, Any]]:
        """Each service's workload as the cluster has it (`kind/name` in its namespace)."""
        found = {}
        for s in services:
            kind = "statefulset" if s.stateful else "deployment"
            got = self.kubectl("get", kind, s.name, "-n", s.namespace, "-o", "json",
                               check=False)
            if got.returncode == 0:
                found[s.id] = json.loads(got.stdout)
        return found

    def stopped(self, w: dict[str, Any]) -> None:
        """Waits until no pod of the workload runs (its selector's pods that are neither
        Succeeded nor Failed: a finished pod with the same labels, e.g. a `helm test` pod,
        holds nothing)."""
        meta = w["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in w["spec"]["selector"]["matchLabels"].items())
        deadline = time.monotonic() + WAIT
        while True:
            pods = json.loads(self.kubectl("get", "pods", "-n", meta["namespace"], "-l",
                                           selector, "-o", "json").stdout)["items"]
            live = [p["metadata"]["name"] for p in pods
                    if p["status"].get("phase") not in ("Succeeded", "Failed")]
            if not live:
                return
            if time.monotonic() > deadline:
                raise OpsError(f"{meta['name']}: pods still running after {WAIT} s: "
                               f"{', '.join(live)}")
            time.sleep(1)

    def scale(self, w: dict[str, Any], replicas: int) -> None:
        meta = w["metadata"]
        self.kubectl("scale", f"{w['kind'].lower()}/{meta['name']}", "-n", meta["namespace"],
                     f"--replicas={replicas}")

    def restore(self, services: list[str], snapshot: str | None, from_stack: str | None,
                force: bool, dry_run: bool = False, items: tuple[Item, ...] | None = None
                ) -> int:
        """`items`: exactly these (a move's), instead of the services' (default: all)."""
        unknown = sorted(set(services) - self.plan.services())
        if unknown:
            raise OpsError(f"nothing is backed up of {', '.join(unknown)}; services with data: "
                           f"{', '.join(sorted(self.plan.services()))}", 2)
        items = self.plan.select(services) if items is None else items
        source = [*(["--snapshot", snapshot] if snapshot else []),
                  *(["--from-stack", from_stack] if from_stack else [])]
        common = [*source, *(["--force"] if force else [])]
        checked = self.run(self._pods_for(items, ["restore", *common, "--dry-run"], False))
        if checked != 0 or dry_run:
            return checked
        stop = [self.estate[s] for s in dict.fromkeys(x for i in items for x in i.stop)]
        running = {k: w for k, w in self.workloads(stop).items() if w["spec"].get("replicas")}
        start = time.monotonic()
        for w in running.values():
            self.scale(w, 0)
        for w in running.values():
            self.stopped(w)
        if running:
            self.say(f"stopped {', '.join(sorted(running))} ({time.monotonic() - start:.1f} s)")
        try:
            code = self.run(self._pods_for(items, ["restore", *common], True))
        finally:
            start = time.monotonic()
            for w in running.values():
                self.scale(w, w["spec"]["replicas"])
            for w in running.values():
                meta = w["metadata"]
                self.kubectl("rollout", "status", f"{w['kind'].lower()}/{meta['name']}", "-n",
                             meta["namespace"], f"--timeout={WAIT}s", timeout=WAIT + 30)
            if running:
                self.say(f"started {', '.join(sorted(running))} "
                         f"({time.monotonic() - start:.1f} s)")
        redis = tuple(i for i in items if i.kind == "redis")
        if code == 0 and redis:
            code = self.run([self.job(None, ["check", *(a for i in redis for a in (
                "--item", i.id)), *source])])
        return code
