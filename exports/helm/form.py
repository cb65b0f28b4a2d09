"""The Helm form of the Kubernetes mapping: every value a chart user may change written as a
template expression over `.Values`, every condition as a template test."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from catalog.backup import repository
from catalog.resolve import ResolvedEstate, ResolvedFile, ResolvedService, ResolvedVolume
from catalog.settings import TRAEFIK_PODS
from exports.helm.values import key, namespace_key
from exports.kubernetes import Cond, Raw, file_key, file_template


def _svc(s: ResolvedService) -> str:
    return f".Values.services.{key(s.id)}"


def host_helper(sid: str) -> str:
    return f"manacore.host.{sid}"


def port_helper(sid: str, port: str) -> str:
    return f"manacore.port.{sid}.{port}"


def hostname_helper(sid: str) -> str:
    return f"manacore.hostname.{sid}"


@dataclass
class HelmForm:
    estate: ResolvedEstate
    instance: str = "{{ .Release.Name }}"
    managed_by: str = "{{ .Release.Service }}"
    files: dict[str, str] = field(default_factory=dict)  # chart path → content (templated)

    def __post_init__(self) -> None:
        # addresses as resolved → the helpers that follow the values (namespace mode,
        # external services, hostnames); longest first so no address matches inside another
        names: dict[str, str] = {}
        for s in self.estate.services:
            names[s.host] = f'{{{{ include "{host_helper(s.id)}" $ }}}}'
            for p in s.ports:
                names[f"{s.host}:{p.container}"] = (
                    f'{{{{ include "{host_helper(s.id)}" $ }}}}:'
                    f'{{{{ include "{port_helper(s.id, p.name)}" $ }}}}')
            if s.public is not None:
                names[s.public.hostname] = f'{{{{ include "{hostname_helper(s.id)}" $ }}}}'
        names[self.estate.settings.domain] = "{{ .Values.domain }}"  # Matrix server name …
        if self.estate.settings.backup.s3_endpoint is not None:  # the env's and the plan's
            names[repository(self.estate.settings)] = (
                's3:{{ trimSuffix "/" .Values.backup.s3Endpoint }}/{{ .Values.backup.bucket }}')
        self._names = names
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w.-])({alternatives})(?![\w-]|\.\w)")

    # --- conditions ---------------------------------------------------------------------

    def test(self, cond: Cond) -> str:
        kind, *args = cond
        if kind == "enabled":
            return f"{_svc(self.estate[args[0]])}.enabled"
        if kind == "secret":
            return f'not (include "manacore.existingSecret" (list $ "{key(args[0])}"))'
        if kind == "native-ip":
            return 'include "manacore.nativeIsIP" $'
        if kind == "native-dns":
            return 'not (include "manacore.nativeIsIP" $)'
        if kind == "external":
            return f'include "manacore.external" (list $ "{key(args[0])}")'
        if kind == "split":
            return 'eq .Values.namespaces.mode "split"'
        if kind == "create-namespaces":
            return ".Values.namespaces.create"
        if kind == "netpol":
            return ".Values.networkPolicy.enabled"
        if kind == "replicated":
            return f"gt (int {_svc(self.estate[args[0]])}.replicas) 1"
        if kind == "ingress":
            return ".Values.ingress.enabled"
        if kind == "protected":
            return 'ne .Values.ingress.protect "omit"'
        if kind == "protect":
            return f'eq .Values.ingress.protect "{args[0]}"'
        raise ValueError(f"unknown condition {cond}")

    def condition(self, when: tuple[Cond, ...]) -> str | None:
        tests = [self.test(c) for c in when]
        if not tests:
            return None
        if len(tests) == 1:
            return tests[0]
        return "and " + " ".join(f"({t})" for t in tests)

    # --- values ---------------------------------------------------------------------------

    def namespace(self, namespace: str) -> str:
        return f'{{{{ include "manacore.namespace" (list $ "{namespace_key(namespace)}") }}}}'

    def escape(self, text: str) -> str:
        """Literal text inside a template: `{{` must not start an action."""
        return text.replace("{{", '{{ "{{" }}')

    def text(self, text: str) -> str:
        return self._pattern.sub(lambda m: self._names[m[1]], self.escape(text))

    def address(self, service: ResolvedService, port: int) -> tuple[str, Any]:
        name = next(p.name for p in service.ports if p.container == port)
        return (f'{{{{ include "{host_helper(service.id)}" $ }}}}',
                Raw(f'{{{{ include "{port_helper(service.id, name)}" $ }}}}'))

    def native_address(self) -> str:
        return "{{ .Values.nativeHost }}"

    def image(self, s: ResolvedService) -> str:
        return f"{{{{ {_svc(s)}.image.repository }}}}:{{{{ {_svc(s)}.image.tag }}}}"

    def pull_policy(self) -> str:
        return "{{ .Values.imagePullPolicy }}"

    def replicas(self, s: ResolvedService) -> Any:
        return Raw(f"{{{{ {_svc(s)}.replicas }}}}")

    def max_unavailable(self, s: ResolvedService) -> Any:
        return Raw(f"{{{{ {_svc(s)}.podDisruptionBudget.maxUnavailable }}}}")

    def failover_seconds(self) -> Any:
        return Raw("{{ .Values.failoverSeconds }}")

    def schedule(self) -> Any:
        return "{{ .Values.backup.schedule }}"

    def repository_egress(self) -> Any:
        return Raw('{{ include "manacore.repositoryEgress" $ }}')

    def resources(self, s: ResolvedService) -> Any:
        return Raw(f"{{{{ toJson {_svc(s)}.resources }}}}")

    def claim(self, s: ResolvedService, v: ResolvedVolume) -> tuple[Any, Any]:
        claim = f'(index {_svc(s)}.persistence "{v.claim}")'
        return (f"{{{{ {claim}.size }}}}",
                f"{{{{ {claim}.storageClass | default .Values.storageClass }}}}")

    def env_data(self, s: ResolvedService) -> Any:
        return Raw(f'{{{{ include "manacore.env" (list $ "{key(s.id)}") }}}}')

    def secret_name(self, s: ResolvedService) -> str:
        return f'{{{{ include "manacore.secretName" (list $ "{key(s.id)}" "{s.name}-secrets") }}}}'

    def secret_payload(self, s: ResolvedService) -> dict[str, Any]:
        return {"data": {n: Raw(f'{{{{ include "manacore.secretValue" (list $ "{n}") '
                                f"| b64enc | quote }}}}")
                         for n in s.secrets}}

    def file_payload(self, s: ResolvedService, files: list[ResolvedFile]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in files:
            path = f"files/{s.id}/{file_key(f)}"
            self.files[path] = file_template(f, self.text)
            data[file_key(f)] = Raw(f"{{{{ tpl ($.Files.Get {json.dumps(path)}) $ | toJson }}}}")
        return {"data": data}

    def wait_image(self) -> str:
        return "{{ .Values.waitImage.repository }}:{{ .Values.waitImage.tag }}"

    def labels(self) -> dict[str, str]:
        return {"helm.sh/chart": '{{ include "manacore.chart" $ }}'}

    # --- the Ingress (helpers in templates.HELPERS) -------------------------------------

    def _public(self, s: ResolvedService) -> str:
        return f'$ "{key(s.id)}" "{s.id}"'

    def ingress_class(self) -> Any:
        return Raw("{{ .Values.ingress.className | quote }}")

    def ingress_annotations(self, s: ResolvedService, middleware: str | None) -> Any:
        return Raw(f'{{{{ include "manacore.ingressAnnotations" (list $ '
                   f'"{namespace_key(s.namespace)}" "{middleware or ""}") }}}}')

    def ingress_rules(self, s: ResolvedService, http: dict[str, Any]) -> Any:
        body = json.dumps(http, separators=(",", ":"))
        assert "`" not in body, f"{s.id}: a path with a backquote"
        return Raw(f'{{{{ include "manacore.ingressRules" (list {self._public(s)} `{body}`) }}}}')

    def ingress_tls(self, s: ResolvedService) -> Any:
        return Raw(f'{{{{ include "manacore.ingressTLS" (list {self._public(s)} '
                   f'"{s.name}-tls") }}}}')

    def controller_peer(self) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "{{ .Values.ingress.controller.namespace }}"}},
                "podSelector": {"matchLabels": Raw(
                    "{{ toJson (.Values.ingress.controller.podLabels | default (dict "
                    + " ".join(json.dumps(x) for kv in TRAEFIK_PODS.items() for x in kv)
                    + ")) }}")}}

    def middleware(self, kind: str) -> dict[str, Any]:
        if kind == "basicAuth":
            return {"secret": Raw("{{ .Values.ingress.basicAuth.secret | quote }}")}
        v = ".Values.ingress.forwardAuth"
        return {"address": Raw(f"{{{{ {v}.address | quote }}}}"),
                "trustForwardHeader": Raw(f"{{{{ {v}.trustForwardHeader }}}}"),
                "authResponseHeaders": Raw(f"{{{{ toJson {v}.authResponseHeaders }}}}")}
